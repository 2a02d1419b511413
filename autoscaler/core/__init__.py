"""The autoscaler's pure decision core: decide, behaviour rules, forecasts, node-pool plans, events, trigger
types.
"""
