"""Running a model: prompt sets and templating, batched KV-cached generation, settings profiles."""
