//go:build preload

package bwrap

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
)

// The preloaded launcher (preload.c), built by the Makefile before a build
// with this tag, and the sources it must have been built from.
var (
	//go:embed preload.so
	builtObject []byte
	//go:embed preload.c
	preloadSource []byte
	//go:embed shim.c
	shimSource []byte
	//go:embed request.c
	requestSource []byte
	//go:embed shim.h
	shimHeader []byte
)

// preloadObject is the object when it carries the hash of these sources
// (the Makefile's SHIM_SOURCES_SHA256, in the order it hashes them), else
// nil: an object left from other sources (a go build without make after a
// change to the C) would run other code than the exec'd launcher's.
var preloadObject = func() []byte {
	h := sha256.New()
	for _, src := range [][]byte{preloadSource, shimSource, requestSource, shimHeader} {
		h.Write(src)
	}
	if !bytes.Contains(builtObject, []byte("bwrap-r-launcher-sources:"+hex.EncodeToString(h.Sum(nil)))) {
		preloadStale = true
		return nil
	}
	return builtObject
}()
