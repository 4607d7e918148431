# controlplane/: controller, sources, snapshots, ctl
libweft_a_SOURCES +=
