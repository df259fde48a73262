// Command bwrap-r is a Nomad task driver that runs each task in a bubblewrap
// sandbox. Started without arguments (as Nomad starts it) it serves the plugin.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	_ "github.com/bwrap-r/bwrap-r/bwrap" // the launchers (shim.c, enter.c) run before main
	"github.com/bwrap-r/bwrap-r/driver"
	"github.com/bwrap-r/bwrap-r/preflight"
)

const usage = `usage:
  bwrap-r                                   serve the Nomad plugin (as Nomad starts it)
  bwrap-r preflight [-config FILE] [-json]  check that this node can run tasks safely
  bwrap-r version                           print the version
`

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case preflight.ProbeCommand:
			os.Exit(preflight.RunProbe(os.Args[2:]))
		case "preflight":
			os.Exit(runPreflight(os.Args[2:]))
		case "version", "-version", "--version":
			fmt.Printf("bwrap-r %s\n", driver.PluginVersion)
			return
		default:
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
	}
	// As Nomad's plugins.Serve, through driver.Serve.
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, JSONFormat: true})
	d := driver.New(logger)
	driver.Serve(d, logger)
	d.Shutdown()
}

// runPreflight prints the whole report; the exit status is 1 when a check is
// an error, 2 for bad usage or config.
func runPreflight(args []string) int {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	configPath := fs.String("config", "", "an agent config, or a file with the plugin's config block")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var conf driver.Config
	var err error
	if *configPath != "" {
		conf, err = driver.ParseConfigFile(*configPath)
	} else {
		conf, err = driver.DefaultConfig()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bwrap-r preflight: %v\n", err)
		return 2
	}
	report := driver.RunPreflight(context.Background(), conf)
	if *asJSON {
		fmt.Println(report.JSON())
	} else {
		fmt.Print(report.Table())
	}
	if len(report.Failed()) > 0 {
		return 1
	}
	return 0
}
