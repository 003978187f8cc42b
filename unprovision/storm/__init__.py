"""Storm coalescing: the hub steps of many single-device events applied together (docs/engine.md, "Storms").

``coalesce`` is the engine's side (join a hub's pending set, or go the direct way at once; settle an
earlier event's waiting step before a later event on the same device is planned), ``settle`` applies
claimed steps and finishes their events, ``flush`` is the work-queue side that drains a hub's set.
"""
