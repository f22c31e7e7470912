"""``plexus lab``: hosts as network namespaces on one machine, each with a real agent
process, beside a real broker and controller (:mod:`.core`); the demo (:mod:`.demo`)."""
