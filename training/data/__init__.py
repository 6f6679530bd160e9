"""What a job trains on: datasets read and checked (`datasets`), examples with their label masks,
preference pairs, the page's preview, and how examples become batches."""
