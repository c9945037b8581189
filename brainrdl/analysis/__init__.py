"""Analysis of trained or published models: layer RDMs over a stimulus set, layer × region
tables with bootstrap intervals and noise ceilings, plots."""
