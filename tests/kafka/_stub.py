import itertools

from logbroker.broker.broker import Broker

_ids = itertools.count(1000)
if not hasattr(Broker, "allocate_producer_id"):
    Broker.allocate_producer_id = lambda self: next(_ids)
