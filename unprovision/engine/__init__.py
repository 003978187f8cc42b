"""The engine: one typed entry point (``core.Engine.apply``) that every trigger and CLI path goes through.

``core`` decides what to do with an event (fingerprint, authority, serialisation, plan), ``run`` applies a
plan step by step, ``inventory`` reads what the planner needs, ``identity`` tells one event from another,
``lease`` serialises events on one target. See docs/engine.md.
"""
