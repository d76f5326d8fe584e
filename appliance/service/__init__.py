"""The appliance's services, one module per area over a shared ``State``
(``appliance.service.state``): vCenters, repositories, hardening, jobs, restores,
maintenance (verify, prune, move), configuration backup and the catalog console.
``appliance.registry.Registry`` composes them; the API's routes, the sessions, the scheduler
and the notifier call them through it (``registry.jobs.add(…)``).
"""
