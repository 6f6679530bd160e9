"""Answer one message from the command line, with the base model or a registered adapter.

    python -m studio.chat "Hello!"
    python -m studio.chat --adapter t1 --role translator "the patient has a fever."
    python -m studio.chat --base modelscope:LLM-Research/Llama-3.2-3B-Instruct --role persona "你是谁？"

The reply streams to stdout. The adapter's own base model and role are used unless given.
"""

import argparse
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from core.errors import UserError  # noqa: E402
from engine import catalogue  # noqa: E402
from engine.adapters import check_loadable  # noqa: E402
from engine.generation import ChatEngine  # noqa: E402
from engine.roles import check_decoding  # noqa: E402
from registry import connect  # noqa: E402
from studio import accounts
from studio.roles import get_role  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("message", help="what to say (or translate)")
    parser.add_argument("--base", help="base model id (default: the adapter's base, else builtin)")
    parser.add_argument("--adapter", help="registered adapter name (default: the base model alone)")
    parser.add_argument("--role", help="role (default: the adapter's role, else assistant)")
    parser.add_argument("--max-new-tokens", type=int, help="reply length limit")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--greedy", action="store_true", help="no sampling and no beams: one greedy answer")
    parser.add_argument("--num-beams", type=int, help="beam search with this many beams (no sampling)")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)
    try:
        db = connect()
        adapter = accounts.cli_adapter(db, args.adapter) if args.adapter else None
        role = get_role(db, args.role or (adapter.role if adapter else "assistant"))
        base = args.base or (adapter.base_model if adapter else "builtin")
        decoding = role.decoding.with_changes(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            do_sample=False if args.greedy or args.num_beams else None,
            num_beams=1 if args.greedy else args.num_beams,
        )
        check_decoding(decoding)
        if adapter is not None:  # a wrong or broken adapter is refused before the model loads
            check_loadable(adapter, catalogue.parse_model_id(base).model_id)
        engine = ChatEngine(base, device=args.device, trust_remote_code=args.trust_remote_code)
        for piece in engine.stream(args.message, role=role, adapter=adapter, decoding=decoding):
            print(piece, end="", flush=True)
        print()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
