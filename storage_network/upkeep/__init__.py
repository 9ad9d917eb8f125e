"""Keeping the network whole: the record scan and table, audit, repair, garbage
collection, durability figures, membership changes.
"""
