"""The API's routes, one module per area; each module's ``add_routes(app, state)`` puts its
routes on the app, and each route hands its request to a service, and nothing else."""
