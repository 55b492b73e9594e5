"""Running gateway Envoys: bootstrap rendering from deploy/envoy and the Envoy process itself."""
