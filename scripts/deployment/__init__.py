"""The deploy, by concern: spec (what), model (steps and plans), bundle, plan, runner, cli."""
