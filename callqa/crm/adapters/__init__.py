"""One module per call source; `callqa.crm.registry` maps adapter names to them."""
