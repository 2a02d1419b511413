"""Trace replay: the simulator behind the controller's ports, traces, the service model, backtest, hindsight,
baselines.
"""
