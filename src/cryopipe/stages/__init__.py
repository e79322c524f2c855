"""Stage entry points: library functions combined the way each workflow stage uses them.

One module per stage (trigger, characterize, calibrate, cleaning), so a rule's code hash covers
its own stage only.
"""
