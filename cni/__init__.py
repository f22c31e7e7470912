"""``plexus-cni``: the CNI plugin (spec 1.0.0 and 1.1.0) that attaches a runtime's network
namespace to a Plexus network through the controller's REST API.

A runtime executes the plugin once per container and command, so it starts on the
standard library alone (no pydantic, FastAPI, typer, httpx or pyroute2 on ADD and DEL;
CHECK imports pyroute2 when it reads the namespace). Modules, by role:

- :mod:`.errors`: the CNI error (code, msg, details) and the spec's codes;
- :mod:`.config`: the request: stdin's network configuration and the ``CNI_*``
  environment, parsed and checked (pure), and the ids Plexus objects get;
- :mod:`.api`: the controller's REST API over :mod:`.wire` (HTTP/1.1 on a socket),
  its refusals translated into CNI errors;
- :mod:`.result`: the ADD result built from an endpoint view (pure);
- :mod:`.commands`: ADD, DEL, STATUS, GC; :mod:`.check`: CHECK;
- :mod:`.main`: the executable (``plexus-cni``): dispatch, and the one place an error
  becomes the JSON a runtime reads.

Nothing here is imported at start-up: ``cni.main`` imports what its command needs.
"""
