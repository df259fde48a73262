//go:build !preload

package bwrap

// preloadObject is empty in a build without the preload tag: spare
// launchers are this binary, exec'd, and exec bwrap (see preload.c).
var preloadObject []byte
