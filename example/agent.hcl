# A single-node dev agent with bwrap-r. Start it with:
#   nomad agent -dev -config example/agent.hcl -plugin-dir "$PWD/bin/plugins"
bind_addr = "127.0.0.1"

# The update check would call HashiCorp's checkpoint service.
disable_update_check = true

client {
  # These fingerprinters call the cloud metadata address (169.254.169.254).
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}

plugin "bwrap-r" {
  config {
    # The preflight proves from a sandboxed task that these are unreachable,
    # and the plugin installs owner-match rules for the task UIDs so they are.
    # On a cloud host keep metadata at its default, 169.254.169.254:80; this
    # demo never sends traffic past loopback.
    egress {
      metadata     = ""
      probe        = ["127.0.0.1:4646"] # the agent's own HTTP API
      manage_rules = true
      deny         = ["127.0.0.1:4646"]
    }

    # bwrap_path  = "/usr/bin/bwrap"  # default: bwrap on PATH
    # state_dir   = "/run/bwrap-r"    # root-only; exit statuses for recovery
    # tmp_size_mb = 256               # each task's private /tmp
  }
}
