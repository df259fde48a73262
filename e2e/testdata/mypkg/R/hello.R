hello <- function() "hello from mypkg"
