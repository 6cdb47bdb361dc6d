"""Where files come from (the Hub, URLs, hf://, object stores, job outputs, mirrors): RemoteFiles
and what is known of them.
"""
