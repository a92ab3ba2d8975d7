"""The engine: the broker's services for both front doors (produce with its acks, fetch with its
long polls, consumer groups of both kinds, topic admin), in terms of the broker core and with no
wire types; see `engine.Engine`."""
