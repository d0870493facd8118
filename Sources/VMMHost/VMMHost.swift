// VMMHost: the host tool's logic that needs Foundation (files, XML, processes) but no terminal:
// generated system descriptions and checks, kept out of `main.swift` so that tests can reach them.
// The Embedded-clean decisions stay in VMMCore; this module only formats and validates for the host.
