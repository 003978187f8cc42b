"""The pure domain: event contract, policy, planner, certificate-chain analysis, and the ports.

Nothing in this package (outside ``shared.adapters``) performs I/O, reads the clock or the environment,
or imports an Azure SDK.
"""
