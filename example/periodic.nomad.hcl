# An R script run every five minutes.
job "periodic" {
  type = "batch"

  periodic {
    crons            = ["*/5 * * * *"]
    prohibit_overlap = true
  }

  group "r" {
    task "report" {
      driver = "bwrap-r"

      config {
        command = "Rscript"
        args    = ["-e", "cat(format(Sys.time()), nrow(mtcars), 'cars\\n')"]
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
