package driver

import (
	"context"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/proto"
	"google.golang.org/grpc"
)

// Serve serves the plugin as Nomad's drivers.Serve does, with one change:
// Nomad's plugin server leaves DisableLogCollection out of the capabilities
// it sends (the client reads it), so without this the client would start a
// logmon for every task whatever the driver says.
func Serve(d *Driver, logger hclog.Logger) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: base.Handshake,
		Plugins: map[string]plugin.Plugin{
			base.PluginTypeBase:   &base.PluginBase{Impl: d},
			base.PluginTypeDriver: drivers.NewDriverPlugin(d, logger),
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.ChainUnaryInterceptor(d.capabilitiesInterceptor)))
		},
		Logger: logger,
	})
}

const capabilitiesMethod = "/hashicorp.nomad.plugins.drivers.proto.Driver/Capabilities"

// capabilitiesInterceptor fills in what Nomad's server leaves out of the
// capabilities response.
func (d *Driver) capabilitiesInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil || info.FullMethod != capabilitiesMethod {
		return resp, err
	}
	if r, ok := resp.(*proto.CapabilitiesResponse); ok && r.Capabilities != nil {
		caps, err := d.Capabilities()
		if err != nil {
			return nil, err
		}
		r.Capabilities.DisableLogCollection = caps.DisableLogCollection
	}
	return resp, nil
}
