"""Serving: Triton model repositories of the toolkit's engines (``serve.repository``) and a
local Triton server around the toolkit's runner (``serve.triton_server``, started from the
main environment by ``serve.launch``)."""
