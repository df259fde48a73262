// Command bwrap-r is a Nomad task driver that runs each task in a bubblewrap
// sandbox. Started without arguments (as Nomad starts it) it serves the plugin.
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/plugins"

	"github.com/bwrap-r/bwrap-r/bwrap"
	"github.com/bwrap-r/bwrap-r/driver"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case bwrap.ShimCommand:
			bwrap.ShimMain(os.Args[2:])
		case bwrap.EnterCommand:
			bwrap.EnterMain(os.Args[2:])
		case "version", "-version", "--version":
			fmt.Printf("bwrap-r %s\n", driver.PluginVersion)
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: bwrap-r [version]\n(without arguments it serves the Nomad plugin)\n")
			os.Exit(2)
		}
	}
	plugins.Serve(func(log hclog.Logger) interface{} { return driver.New(log) })
}
