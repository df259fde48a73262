# A plumber API in a bwrap-r sandbox.
job "plumber" {
  type = "service"

  group "api" {
    network {
      port "http" {}
    }

    task "api" {
      driver = "bwrap-r"

      config {
        command = "Rscript"
        args = ["-e", "plumber::pr_run(plumber::pr('/local/api.R'), host = Sys.getenv('NOMAD_IP_http'), port = as.integer(Sys.getenv('NOMAD_PORT_http')))"]
      }

      template {
        destination     = "local/api.R"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-R
          #* Add two numbers
          #* @param a
          #* @param b
          #* @get /sum
          function(a, b) as.numeric(a) + as.numeric(b)
        R
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
