# Restore R packages into the allocation, then run R code that uses them.
#
# The prestart task "restore" installs var.packages from a CRAN-like
# repository into /alloc/lib: r_lib_writable makes that directory for it,
# owned by its UID (it needs a compiler only for packages with C/C++/Fortran
# code; R CMD INSTALL builds in the task's private /tmp). The main task then
# loads them from /alloc/lib (R_LIBS). Each task runs as a UID of its own: the
# main task reads the library but cannot change it.
#
# With a real repository (a CRAN mirror, a Posit Package Manager snapshot for
# pinned versions, an internal repository), the node must be allowed to reach
# it (see the plugin's egress rules):
#
#   nomad job run \
#     -var 'repo=https://packagemanager.posit.co/cran/2024-06-03' \
#     -var 'packages=["jsonlite"]' \
#     -var 'main=library(jsonlite); cat(toJSON(list(ok = TRUE)), "\n")' \
#     example/restore/restore.nomad.hcl
#
# With a repository on the node's disk (no network at all), put it below one
# of the plugin's r_library_roots and bind it into the restore task with
# repo_mounts (read-only, at its own path):
#
#   plugin "bwrap-r" { config { r_library_roots = ["/srv/cran"] } }
#
#   nomad job run -var 'repo=file:///srv/cran/main' \
#     -var 'repo_mounts=["/srv/cran/main"]' example/restore/restore.nomad.hcl
#
# A repository is a directory with src/contrib/ holding the packages' source
# tarballs (R CMD build) and their index:
#   Rscript -e 'tools::write_PACKAGES("/srv/cran/main/src/contrib", type = "source")'
# e2e/restore_test.go builds one with e2e/testdata/mypkg and runs this file.
#
# With the plugin's package cache (plugin config r_cache_dir) and
# -var use_cache=true, the restore task keeps each package's source tarball
# in the node's cache for its R x.y (/r-cache in the sandbox) and installs
# from there when it is present: a second restore of the same packages
# downloads nothing. List every package the app needs, as a lockfile does:
# a package found in the cache brings no dependencies along.
# For a Shiny app, make the job a service and the main task the app.

variable "repo" {
  description = "The CRAN-like repository: https://... or file:///path on the node."
  type        = string
  default     = "https://cloud.r-project.org"
}

variable "repo_mounts" {
  description = "Host directories (below the plugin's r_library_roots) bound read-only into the restore task: a file:// repository."
  type        = list(string)
  default     = []
}

variable "packages" {
  description = "The packages to install (with their dependencies)."
  type        = list(string)
  default     = ["mypkg"]
}

variable "use_cache" {
  description = "Keep and reuse package tarballs in the node's package cache (needs the plugin's r_cache_dir)."
  type        = bool
  default     = false
}

variable "main" {
  description = "The R code the main task runs."
  type        = string
  default     = "library(mypkg); cat(hello(), \"\\n\")"
}

locals {
  # c("pkg1", "pkg2") as R reads it.
  packages = format("c(%s)", join(", ", formatlist("%q", var.packages)))
}

job "restore" {
  type = "batch"

  group "app" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "restore" {
      driver = "bwrap-r"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        command        = "Rscript"
        r_lib_writable = "/alloc/lib"
        r_libs           = var.repo_mounts
        r_cache_writable = var.use_cache
        # install.packages only warns when a package fails: check, and fail
        # the task (and so the allocation) when one is missing.
        args = ["-e", <<-EOT
          pkgs <- ${local.packages}
          lib <- "/alloc/lib"
          cache <- Sys.getenv("BWRAP_R_CACHE")
          if (${var.use_cache ? "TRUE" : "FALSE"} && nzchar(cache)) {
            cached <- function(p) list.files(cache, pattern = paste0("^", p, "_.*[.]tar[.]gz$"), full.names = TRUE)
            missing <- pkgs[lengths(lapply(pkgs, cached)) == 0]
            if (length(missing) > 0) {
              # Download privately, then rename into the cache: a rename is
              # atomic, so a restore running at the same time sees a whole
              # tarball or none. Where another got there first, its (sticky,
              # not replaceable) tarball stays and this one is used.
              tmp <- tempfile("dl-")
              dir.create(tmp)
              got <- download.packages(missing, destdir = tmp, repos = "${var.repo}", type = "source")
              for (f in got[, 2]) {
                part <- file.path(cache, paste0(".part-", Sys.getpid(), "-", basename(f)))
                final <- file.path(cache, basename(f))
                file.copy(f, part)
                if (!suppressWarnings(file.rename(part, final))) unlink(part)
              }
              cat("downloaded", paste(missing, collapse = ", "), "into the cache\n")
            } else {
              cat("all of", paste(pkgs, collapse = ", "), "found in the cache\n")
            }
            files <- vapply(pkgs, function(p) tail(sort(cached(p)), 1), "")
            install.packages(files, repos = NULL, lib = lib, type = "source")
          } else {
            install.packages(pkgs, repos = "${var.repo}", lib = lib, type = "source")
          }
          ok <- vapply(pkgs, function(p) requireNamespace(p, lib.loc = lib, quietly = TRUE), logical(1))
          if (!all(ok)) {
            message("not installed: ", paste(pkgs[!ok], collapse = ", "))
            quit(status = 1)
          }
          cat("restored", paste(pkgs, collapse = ", "), "into", lib, "\n")
          EOT
        ]
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }

    task "main" {
      driver = "bwrap-r"

      config {
        command = "Rscript"
        args    = ["-e", var.main]
      }

      # The restore task's library, read-only for this task's UID.
      env {
        R_LIBS = "/alloc/lib"
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
