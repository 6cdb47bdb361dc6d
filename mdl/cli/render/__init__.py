"""What people and programs see: progress displays, stderr messages, tables, JSON, the log (rich
only here).
"""
