# netfilter/: the only code that talks nftables and rtnetlink
libweft_a_SOURCES +=
