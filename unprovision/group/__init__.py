"""Group scope: every device registered through an enrollment group, purged in its own hub.

``batches`` holds the primitives both modes share; ``inprocess`` purges in this process (CLI, and the app
without a work queue), with ``jobs`` for hubs large enough for an import job; ``scaleout`` hands batches
to the work queue, recorded in the journal first, and settles them as the work-queue function applies them.
"""
