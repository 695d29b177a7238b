"""The fault suite: the whole system under SIGKILLs, broker restarts and the loss of the
broker's data, checked for lost or doubled effects (``python -m tests.faults``)."""
