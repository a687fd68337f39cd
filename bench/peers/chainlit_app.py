"""The Chainlit peer of bench/first_token.py: the smallest Chainlit app that streams an OpenAI-wire model's
answer, the way Chainlit's own examples do. Run by the benchmark as
`chainlit run bench/peers/chainlit_app.py --headless --host 127.0.0.1 --port P` in the peer's own venv
(bench/.peers/chainlit), never imported by anything else.

Environment: BENCH_OPENAI_BASE_URL (the fake wire server's `/v1`), BENCH_OPENAI_MODEL, OPENAI_API_KEY (a
dummy: the fake server accepts any key).
"""

import os

import chainlit as cl
import openai

client = openai.AsyncOpenAI(base_url=os.environ["BENCH_OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])
MODEL = os.environ.get("BENCH_OPENAI_MODEL", "gpt-4.1-mini")


@cl.on_message
async def on_message(message: cl.Message) -> None:
    answer = cl.Message(content="")
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": message.content}], stream=True,
    )
    async for chunk in stream:
        if chunk.choices and (token := chunk.choices[0].delta.content):
            await answer.stream_token(token)  # the first one is sent as `stream_start`, the rest as `stream_token`
    await answer.send()
