//go:build preload

package bwrap

import _ "embed"

// preloadObject is the preloaded launcher (preload.c), built by the
// Makefile before a build with this tag.
//
//go:embed preload.so
var preloadObject []byte
