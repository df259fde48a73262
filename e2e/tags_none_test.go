//go:build !preload

package e2e

// pluginTags are the build tags of the plugin the agents run: those of this
// test binary.
const pluginTags = ""
