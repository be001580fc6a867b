"""A bash script to its syntax tree (GNU Bash Reference Manual, 3.2 "Shell Commands"): lists,
pipelines, `&&`/`||`, `if`, `case`, `for`, `while`/`until`, `{ }`, `( )`, `(( ))`, `[[ ]]` and
function definitions. Syntax errors name the line, as `bash -n` would reject the script.
"""
from __future__ import annotations

from planner.engines.shell.lexer import Lexer, Token
from planner.engines.shell.syntax import (
    AndOr,
    ArithCommand,
    ArithFor,
    Case,
    CaseItem,
    Clause,
    Cond,
    CondCommand,
    For,
    FunctionDef,
    Group,
    If,
    Lit,
    Node,
    Pipeline,
    Program,
    Sequence,
    Simple,
    While,
    Word,
)
from planner.spec.errors import InputError

_RESERVED = frozenset("if then elif else fi do done case esac while until for in function select time { } ! [[ ]]"
                      .split())
_CASE_ENDS = (";;", ";&", ";;&")
_UNARY = frozenset("-a -b -c -d -e -f -g -h -k -n -o -p -r -s -t -u -v -w -x -z -G -L -N -O -S".split())
_BINARY = frozenset("== = != =~ < > -eq -ne -lt -le -gt -ge -nt -ot -ef".split())
_TEXT_LIMIT = 200


class _Unreadable(Exception):
    pass


class Parser:
    def __init__(self, text: str, file: str):
        self.lex = Lexer(text, file)
        self.file = file
        self.sites = 0
        self.tok = self.lex.token()

    # -- tokens -----------------------------------------------------------------------------
    def advance(self) -> Token:
        tok, self.tok = self.tok, self.lex.token()
        return tok

    def keyword(self) -> str | None:
        if self.tok.kind == "word":
            text = self.tok.value.literal()
            if text in _RESERVED:
                return text
        return None

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def skip_newlines(self) -> None:
        while self.tok.kind == "newline":
            self.advance()

    def error(self, tok: Token, message: str) -> InputError:
        return InputError(message, file=self.file, field=f"line {tok.line}")

    def unexpected(self) -> InputError:
        tok = self.tok
        what = {"eof": "end of file", "newline": "newline"}.get(tok.kind)
        if what is None:
            what = repr(tok.value) if tok.kind == "op" else repr(self.lex.s[tok.start:self.lex.pos].strip())
        return self.error(tok, f"syntax error near {what}")

    def expect(self, word: str, opened: Token, what: str) -> None:
        if self.keyword() != word:
            if self.tok.kind == "eof":
                raise self.error(opened, f"the {what} here has no {word!r}")
            raise self.unexpected()
        self.advance()

    def new_site(self) -> int:
        self.sites += 1
        return self.sites - 1

    def text(self, start: int, end: int) -> str:
        text = " ".join(self.lex.s[start:end].split()).rstrip(";").strip()
        return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + " ..."

    # -- lists ------------------------------------------------------------------------------
    def program(self) -> Program:
        body = self.list(frozenset())
        if self.tok.kind != "eof":
            raise self.unexpected()
        return Program(body, self.file, self.sites)

    def at_end(self, ends: frozenset[str]) -> bool:
        return (self.tok.kind == "eof" or self.at_op(")", *_CASE_ENDS)
                or (self.keyword() in ends and self.keyword() is not None))

    def list(self, ends: frozenset[str]) -> Node:
        items = []
        while True:
            while self.tok.kind == "newline" or (items and self.at_op(";", "&")):
                self.advance()
            if self.at_end(ends):
                break
            items.append(self.and_or())
            if not (self.tok.kind == "newline" or self.at_op(";", "&") or self.at_end(ends)):
                raise self.unexpected()
        return items[0] if len(items) == 1 else Sequence(tuple(items))

    def and_or(self) -> Node:
        start = self.tok.start
        items, ops, sites, texts = [self.pipeline()], [], [], []
        while self.at_op("&&", "||"):
            texts.append(self.text(start, self.tok.start))
            ops.append(self.advance().value)
            sites.append(self.new_site())
            self.skip_newlines()
            items.append(self.pipeline())
        if len(items) == 1:
            return items[0]
        return AndOr(tuple(items), tuple(ops), tuple(sites), tuple(texts))

    def pipeline(self) -> Node:
        line, negated = self.tok.line, False
        while self.keyword() in ("!", "time"):
            negated ^= self.advance().value.literal() == "!"
        commands = [self.command()]
        while self.at_op("|", "|&"):
            self.advance()
            self.skip_newlines()
            commands.append(self.command())
        if len(commands) == 1 and not negated:
            return commands[0]
        return Pipeline(tuple(commands), negated, line)

    # -- commands ---------------------------------------------------------------------------
    def command(self) -> Node:
        tok = self.tok
        if tok.kind == "arith":
            self.advance()
            return self.redirects(ArithCommand(tok.value, tok.line))
        compound = self.at_op("(") or self.keyword() in ("if", "while", "until", "for", "case", "{", "[[",
                                                          "function")
        if not compound:
            if self.keyword() is not None and self.keyword() not in ("!",):
                raise self.unexpected()
            return self.simple()
        self.lex.enter(tok.start)
        if self.at_op("("):
            self.advance()
            body = self.list(frozenset())
            if not self.at_op(")"):
                raise self.error(tok, "the ( here is never closed") if self.tok.kind == "eof" else self.unexpected()
            self.advance()
            node: Node = Group(body, subshell=True)
        else:
            node = getattr(self, "_" + {"{": "group", "[[": "cond"}.get(self.keyword(), self.keyword()))(tok)
        self.lex.leave()
        return self.redirects(node)

    def redirects(self, node: Node) -> Node:
        while self.tok.kind == "redir":
            self.advance()
        return node

    def simple(self) -> Node:
        line = self.tok.line
        assigns: list[Word] = []
        words: list[Word] = []
        while self.tok.kind in ("word", "redir"):
            tok = self.advance()
            if tok.kind == "word":
                (words if words or tok.value.assign is None else assigns).append(tok.value)
        if not assigns and not words:
            raise self.unexpected()
        if len(words) == 1 and not assigns and self.at_op("("):
            name = words[0].literal()
            open_ = self.advance()
            if name is None or not self.at_op(")"):
                raise self.error(open_, "syntax error near '('")
            self.advance()
            return self._function_body(name, line)
        return Simple(tuple(assigns), tuple(words), line)

    def _function_body(self, name: str, line: int) -> FunctionDef:
        self.skip_newlines()
        return FunctionDef(name, self.command(), line)

    def _function(self, tok: Token) -> FunctionDef:
        self.advance()
        name = self.tok.value.literal() if self.tok.kind == "word" else None
        if name is None:
            raise self.unexpected()
        self.advance()
        if self.at_op("("):
            self.advance()
            if not self.at_op(")"):
                raise self.unexpected()
            self.advance()
        return self._function_body(name, tok.line)

    def _group(self, tok: Token) -> Group:
        self.advance()
        body = self.list(frozenset({"}"}))
        self.expect("}", tok, "{")
        return Group(body, subshell=False)

    def _if(self, tok: Token) -> If:
        clauses = []
        opened = tok
        self.advance()
        while True:
            start = self.tok.start
            condition = self.list(frozenset({"then"}))
            text = self.text(start, self.tok.start)
            self.expect("then", opened, opened.value.literal())
            body = self.list(frozenset({"elif", "else", "fi"}))
            clauses.append(Clause(condition, body, self.new_site(), text, opened.line))
            if self.keyword() != "elif":
                break
            opened = self.advance()
        otherwise = None
        if self.keyword() == "else":
            self.advance()
            otherwise = self.list(frozenset({"fi"}))
        self.expect("fi", tok, "if")
        return If(tuple(clauses), otherwise, tok.line)

    def _while(self, tok: Token) -> While:
        self.advance()
        start = self.tok.start
        condition = self.list(frozenset({"do"}))
        text = self.text(start, self.tok.start)
        self.expect("do", tok, tok.value.literal())
        body = self.list(frozenset({"done"}))
        self.expect("done", tok, tok.value.literal())
        return While(condition, body, tok.value.literal() == "until", self.new_site(), text, tok.line)

    _until = _while

    def _do_done(self, tok: Token) -> Node:
        while self.tok.kind == "newline" or self.at_op(";"):
            self.advance()
        self.expect("do", tok, "for")
        body = self.list(frozenset({"done"}))
        self.expect("done", tok, "for")
        return body

    def _for(self, tok: Token) -> Node:
        self.advance()
        if self.tok.kind == "arith":
            arith = self.advance()
            init, condition, step = _split_arith(arith.value, self.error(arith, "for (( )) needs two ';'"))
            text = self.text(arith.start, self.lex.pos)
            return ArithFor(init, condition, step, self._do_done(tok), self.new_site(), text, tok.line)
        name = self.tok.value.literal() if self.tok.kind == "word" else None
        if name is None or not name.isidentifier():
            raise self.unexpected()
        self.advance()
        self.skip_newlines()
        words = None
        if self.keyword() == "in":
            self.advance()
            words = []
            while self.tok.kind == "word":
                words.append(self.advance().value)
            words = tuple(words)
        return For(name, words, self._do_done(tok), self.new_site(), tok.line)

    def _case(self, tok: Token) -> Case:
        self.advance()
        if self.tok.kind != "word":
            raise self.unexpected()
        subject = self.advance().value
        text = self.text(tok.start, self.tok.start)
        self.skip_newlines()
        self.expect("in", tok, "case")
        items = []
        while True:
            self.skip_newlines()
            if self.keyword() == "esac" or self.tok.kind == "eof":
                break
            if self.at_op("("):
                self.advance()
            start = self.tok.start
            patterns = []
            while True:
                if self.tok.kind != "word":
                    raise self.unexpected()
                patterns.append(self.advance().value)
                if not self.at_op("|"):
                    break
                self.advance()
            if not self.at_op(")"):
                raise self.unexpected()
            label = self.text(start, self.tok.start) + ")"
            self.advance()
            body = self.list(frozenset({"esac"}))
            terminator = self.advance().value if self.at_op(*_CASE_ENDS) else ";;"
            items.append(CaseItem(tuple(patterns), body, terminator, label))
        self.expect("esac", tok, "case")
        return Case(subject, tuple(items), self.new_site(), text, tok.line)

    # -- [[ expression ]] (manual 3.2.5.2) ---------------------------------------------------
    def _cond(self, tok: Token) -> CondCommand:
        self.advance()
        try:
            expr = self._cond_or()
        except _Unreadable:
            expr = Cond("unreadable", ())
            while self.keyword() != "]]":
                if self.tok.kind in ("eof", "newline"):
                    raise self.error(tok, "the [[ here has no ]]") from None
                self.advance()
        if self.keyword() != "]]":
            if self.tok.kind in ("eof", "newline"):
                raise self.error(tok, "the [[ here has no ]]")
            raise self.unexpected()
        self.advance()
        return CondCommand(expr, tok.line)

    def _cond_or(self) -> Cond:
        left = self._cond_and()
        while self.at_op("||"):
            self.advance()
            left = Cond("or", (left, self._cond_and()))
        return left

    def _cond_and(self) -> Cond:
        left = self._cond_not()
        while self.at_op("&&"):
            self.advance()
            left = Cond("and", (left, self._cond_not()))
        return left

    def _cond_not(self) -> Cond:
        if self.keyword() == "!":
            self.advance()
            self.lex.enter(self.tok.start)
            inner = self._cond_not()
            self.lex.leave()
            return Cond("not", (inner,))
        return self._cond_primary()

    def _cond_primary(self) -> Cond:
        if self.at_op("("):
            self.advance()
            self.lex.enter(self.tok.start)
            inner = self._cond_or()
            self.lex.leave()
            if not self.at_op(")"):
                raise _Unreadable
            self.advance()
            return inner
        if self.tok.kind != "word" or self.keyword() == "]]":
            raise _Unreadable
        first = self.advance().value
        if first.literal() in _UNARY and self.tok.kind == "word" and self.keyword() != "]]":
            return Cond(first.literal(), (self.advance().value,))
        if self.tok.kind == "redir" and self.tok.op in ("<", ">"):
            op = self.tok.op
            return Cond(op, (first, self.advance().value))
        if self.tok.kind == "word" and self.tok.value.literal() in _BINARY:
            op = self.advance().value.literal()
            if self.tok.kind != "word":
                raise _Unreadable
            return Cond(op, (first, self.advance().value), pattern=op in ("==", "=", "!="))
        return Cond("word", (first,))


def _split_arith(word: Word, error: InputError) -> tuple[Word, Word, Word]:
    """The three expressions of `for ((init; condition; step))`, split at the `;` outside expansions."""
    pieces: list[list] = [[]]
    for part in word.parts:
        if isinstance(part, Lit) and not part.quoted and ";" in part.text:
            texts = part.text.split(";")
            for k, text in enumerate(texts):
                if k:
                    pieces.append([])
                if text:
                    pieces[-1].append(Lit(text, False))
        else:
            pieces[-1].append(part)
    if len(pieces) != 3:
        raise error
    return tuple(Word(tuple(p), word.line) for p in pieces)  # type: ignore[return-value]


def parse(text: str, file: str = "<script>") -> Program:
    """The syntax tree of a bash script; InputError (with the line) where bash would refuse it."""
    return Parser(text, file).program()
