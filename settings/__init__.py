"""One settings layer (pydantic-settings) for the service, the MAP and the site tools."""
