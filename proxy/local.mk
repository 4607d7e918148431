# proxy/: listeners, workers, connections
libweft_a_SOURCES +=
