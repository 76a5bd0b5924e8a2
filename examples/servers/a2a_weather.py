"""A workflow to serve over A2A: `pyagent a2a serve examples/servers/a2a_weather.py`."""

from pyagent import agent
from pyagent.orchestrator import ExecutionPattern, Task, Workflow


def forecast(question: str) -> str:
    city = question.rstrip("?").split()[-1]
    return f"forecast for {city}: light rain in the morning, wind from the west"


weather = Workflow(
    name="Weather Desk", pattern=ExecutionPattern.SEQUENTIAL,
    description="Weather forecasts: rain, wind and temperatures for any city",
    steps=[Task(name="forecast", agent=agent(forecast))])
