"""Binary format: the module description (``module``), the decoder (``reader``), the encoder's
primitives (``encode``) and the section rewriter (``rewrite``).

Nothing is imported here: a process that runs a module from the code cache needs the description
but never the decoder."""
