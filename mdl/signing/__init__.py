"""OpenSSF model signatures (model.sig): whom to trust, what a verified signature says, and
making one.
"""
