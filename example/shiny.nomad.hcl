# A Shiny app in a bwrap-r sandbox, on a port Nomad assigns.
job "shiny" {
  type = "service"

  group "app" {
    network {
      port "http" {}
    }

    task "shiny" {
      driver = "bwrap-r"

      config {
        command = "Rscript"
        args = ["-e", "shiny::runApp(shiny::shinyAppFile('/local/app.R'), host = Sys.getenv('NOMAD_IP_http'), port = as.integer(Sys.getenv('NOMAD_PORT_http')), launch.browser = FALSE)"]
      }

      # The app itself; a real job would fetch it with an artifact block.
      # Rendered straight into local/: a directory the client makes for a
      # template takes the agent's umask (0700 under umask 077), so the task
      # could not enter it.
      template {
        destination     = "local/app.R"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-R
          library(shiny)
          ui <- fluidPage(
            titlePanel("Hello from bwrap-r"),
            sliderInput("n", "Observations", 1, 1000, 100),
            plotOutput("hist")
          )
          server <- function(input, output) {
            output$hist <- renderPlot(hist(rnorm(input$n), main = R.version.string))
          }
          shinyApp(ui, server)
        R
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "10s"

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
