# Hand-written mdoc pages, linted by `make check`.
