"""Optimisation of router LLM programs: MIPROv2 and GEPA strategies, mined policies, the held-out
promotion statistics and the evaluation of programs. Uses routing, llm and core."""
