"""Route-switch inside the tools apps already use; each module imports its library only when used.

* :mod:`.openai_client`: ``route_switch.OpenAI`` / ``route_switch.AsyncOpenAI``, an in-process drop-in
  for the ``openai`` client (``model="router"``), with the proxy's fallback to the next tier up;
* :mod:`.dspy`: ``RoutedLM``, a ``dspy.LM`` that routes every call of a DSPy program and reports
  tier shares and cost per program;
* :mod:`.litellm`: a ``litellm.Router`` pre-routing hook that lets route-switch pick the deployment;
* :mod:`.litellm_proxy`: a LiteLLM proxy callback that sends ``route-switch/<router>`` to the chosen
  tier's model group, with route-switch's budgets per key (extra ``litellm-proxy``);
* :mod:`route_switch.routing.telemetry`: OpenTelemetry spans per decision (extra ``otel``).
"""
