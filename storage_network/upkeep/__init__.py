"""Keeping the network whole: inventory, audit, repair, garbage collection, durability figures,
membership changes.
"""
