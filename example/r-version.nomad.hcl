# An R script pinned to R 4.2: it runs on the highest 4.2.x patch release the
# node has under the plugin's r_root (rig's layout, /opt/R/<x.y.z> by default),
# and the constraint places it only on nodes that have one.
job "r-version" {
  type = "batch"

  # The attribute's name ends in "4.2", which HCL2 would read as an index
  # expression: "$${" keeps the "${...}" literal for Nomad's scheduler.
  constraint {
    attribute = "$${attr.driver.bwrap-r.r.minor.4.2}"
    operator  = "is_set"
  }

  group "r" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "report" {
      driver = "bwrap-r"

      config {
        command   = "Rscript"
        r_version = "4.2"
        args      = ["-e", "cat(R.version.string, '\\n'); cat('R_HOME:', R.home(), '\\n')"]
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
