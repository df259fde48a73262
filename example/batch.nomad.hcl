# An R script as a batch job: prints its R version and a computed value.
job "batch" {
  type = "batch"

  group "r" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "compute" {
      driver = "bwrap-r"

      config {
        command = "Rscript"
        args    = ["-e", "cat(R.version.string, '\\n'); cat('sum:', sum(1:100), '\\n')"]
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
