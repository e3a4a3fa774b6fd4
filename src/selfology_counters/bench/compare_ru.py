"""The measured sections of docs/COUNTER_ANALYSIS_RU.md, in Russian, from the same
:class:`CompareResult` as the English decision matrix (compare_report.py).

The Russian analysis is prose written by hand, with no measured figure in it. Every figure sits
in a section between two markers::

    <!-- generated: NAME -->
    ...
    <!-- /generated: NAME -->

``compare --out DIR`` rewrites what lies between the markers of DIR/COUNTER_ANALYSIS_RU.md (the
prose around them stays as it is) in the same run that writes DIR/COUNTER_DECISION_MATRIX.md,
so the two documents always show one run's figures. Without that file in DIR it writes one
holding only the sections, in their markers. Numbers are written the Russian way (``1 214/с``,
``0,367 мс``); the digits are those of the English report.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from selfology_counters.bench.compare_format import (
    DOC_CONCURRENT,
    DOC_SCALING,
    DOC_SEQUENTIAL,
    SHORT,
    ms,
    pct,
    seconds,
    times,
)
from selfology_counters.bench.compare_results import CompareResult, lost, many_users, same_user
from selfology_counters.bench.harness import ConcurrentResult

DOC_NAME = "COUNTER_ANALYSIS_RU.md"
NBSP = "\u00a0"
_MARKED = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->)(?P<body>.*?)(<!-- /generated: (?P=name) -->)",
    re.DOTALL,
)
_OPENING = re.compile(r"<!-- generated: ([a-z-]+) -->")

SHORT_RU = {
    "bare": "голый INSERT (нижняя граница)",
    "manual_tx": "ручной UPDATE, одна транзакция",
    "manual_autocommit": "ручной UPDATE, autocommit",
    "manual_rmw": "ручной read-modify-write",
    "trigger_007": "триггер миграции 007",
    "ours": "наши триггеры (как поставляются)",
    "ours_deferred": "наши триггеры, отложенный режим",
    "matview": "материализованное представление",
    "count_star": "COUNT(*) при чтении",
    "events": "событийная схема (outbox)",
    "pg_ivm": "pg_ivm (IMMV)",
}
PHASES_RU = {
    "read data": "данные для чтений",
    "sequential": "последовательные",
    "concurrent": "одновременные",
    "bulk": "массовые",
    "reads": "чтения",
}
_CLAIM_WORDS = {
    "instances": "случаев",
    "Yes": "да",
    "No": "нет",
    "Low": "низкая",
    "Medium": "средняя",
    "High": "высокая",
}


# ---- numbers, the Russian way, with the English report's digits ----


def ru(text: str) -> str:
    """English-formatted figures written the Russian way: thousands apart by a no-break
    space, a decimal comma, ``мс``, ``с``, ``×``."""
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", NBSP, text)
    text = re.sub(r"(?<=\d)\.(?=\d)", ",", text)
    text = re.sub(r"(?<=\d)x\b", "×", text)
    text = re.sub(r"(?<=\d) ms\b", f"{NBSP}мс", text)
    text = re.sub(r"(?<=\d)ms\b", f"{NBSP}мс", text)
    text = re.sub(r"(?<=\d) s\b", f"{NBSP}с", text)
    return text.replace("/sec", "/с")


def rate_ru(value: float | None, unit: str = "/с") -> str:
    return "-" if value is None else ru(f"{value:,.0f}") + unit


def ms_ru(value: float | None) -> str:
    return ru(ms(value))


def claim_ru(claim: str) -> str:
    """One of the document's claims (compare_format.py), in Russian."""
    words = " ".join(_CLAIM_WORDS.get(word, word) for word in claim.split(" "))
    return ru(words).replace("-", "–")


def plural(n: int, forms: tuple[str, str, str]) -> str:
    """``n`` and the noun in the form Russian takes after it: (1, 2-4, 5 and more)."""
    tens, units = n % 100, n % 10
    form = forms[0] if units == 1 and tens != 11 else forms[2]
    if 2 <= units <= 4 and not 12 <= tens <= 14:
        form = forms[1]
    return f"{ru(f'{n:,}')} {form}"


WRITERS = ("писатель", "писателя", "писателей")
USERS = ("пользователь", "пользователя", "пользователей")
INSERTS = ("вставка", "вставки", "вставок")
TIMES = ("раз", "раза", "раз")


def _beside(claim: str, measured: str) -> str:
    return f"{claim_ru(claim)} → {measured}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    lines = [cells(headers), "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + [cells(row) for row in rows])


# ---- the sections ----


def section_run(r: CompareResult) -> str:
    """Where, how and when the figures were measured (the English report's first section)."""
    s, z = r.server, r.sizes
    phases = ", ".join(
        f"{PHASES_RU.get(k, k)} {ru(f'{v:.0f}')}{NBSP}с" for k, v in r.phase_seconds.items()
    )
    lines = [
        f"- сервер: {s.version}",
        f"- настройки: {', '.join(s.settings)}",
        f"- машина: {s.machine}; {s.cpus} CPU, {ru(f'{s.memory_gib:.1f}')}{NBSP}ГиБ памяти "
        "(у клиента; со встроенным сервером это и память сервера)",
        f"- команда: `{r.command}`",
        *([f"- расширения: {', '.join(s.extensions)}"] if s.extensions else []),
        f"- объёмы ({z.name}): последовательные вставки — {z.inserts} на стратегию (после "
        f"{z.warmup} разогревочных раундов); одновременные — {plural(z.writers, WRITERS)} × "
        f"{plural(z.per_writer, INSERTS)}, раундов: {z.rounds}; массовая вставка "
        f"{ru(f'{z.bulk_rows:,}')} строк × {z.bulk_repeats}; чтения при "
        f"{ru(f'{z.read_answers:,}')} ответах × {z.read_repeats}",
        f"- прогон: {r.started_at}, {ru(f'{r.seconds:.0f}')}{NBSP}с ({phases})",
    ]
    if r.budget is not None:
        b = r.budget
        lines.append(
            f"- соединения: max_connections={b.max_connections}, занято {b.in_use} в момент "
            f"подключения писателей (считая соединение самого инструмента); писателей: "
            f"{b.writers}"
        )
        if b.note:
            lines.append(f"- ограничено: {b.note}")
    return "\n".join(lines)


def section_claims(r: CompareResult) -> str:
    """The document's two benchmark tables, each cell "claim → measured"."""
    return _claims_sequential(r) + "\n\n" + _claims_concurrent(r)


_DOC_ROWS = (
    ("manual_tx", "manual", "Manual UPDATE (в одной транзакции)"),
    ("manual_autocommit", "manual", "Manual UPDATE (autocommit)"),
    ("manual_rmw", "manual", "Manual UPDATE (read-modify-write)"),
    ("trigger_007", "trigger", "DB Trigger (BEST) = миграция 007"),
    ("ours", "trigger", "наши statement-level триггеры *"),
    ("ours_deferred", "events", "наши триггеры, отложенный режим *"),
    ("events", "events", "Event-Driven (outbox + воркер)"),
)


def _claims_sequential(r: CompareResult) -> str:
    rows = []
    for key, doc, name in _DOC_ROWS:
        s = r.sequential_of(key)
        if s is None:
            continue
        claim = DOC_SEQUENTIAL[doc]
        consistency = ru(pct(s.accounting.consistency))
        if s.accounting.consistency_at_end != s.accounting.consistency:
            consistency = (
                f"{ru(pct(s.accounting.consistency_at_end))} к концу записи, "
                f"{ru(pct(s.accounting.consistency))} после разбора очереди"
            )
        rows.append(
            [
                name,
                _beside(claim[0], ms_ru(s.latency.avg_ms)),
                _beside(claim[1], ms_ru(s.latency.total_ms)),
                _beside(claim[2], rate_ru(s.latency.per_second)),
                _beside(claim[3], consistency),
            ]
        )
    cold = r.read_of("count_star", "cold")
    if cold is not None:
        claim = DOC_SEQUENTIAL["count"]
        right = "100%" if cold.value == cold.expected else f"прочитано {cold.value}"
        rows.insert(
            min(5, len(rows)),
            [
                "COUNT(*) query (само чтение)",
                _beside(claim[0], ms_ru(cold.latency.p50_ms)),
                _beside(claim[1], ms_ru(cold.latency.p50_ms * r.sizes.inserts)),
                _beside(claim[2], rate_ru(1000 / cold.latency.p50_ms)),
                _beside(claim[3], right),
            ],
        )
    headers = ["Метод", "Среднее время", "Общее время", "Пропускная способность", "Консистентность"]
    return (
        f"**Последовательные вставки, {r.sizes.inserts} на стратегию** (заявлено в документе "
        "→ измерено)\n\n"
        + _table(headers, rows)
        + "\n\nЗвёздочкой отмечено то, чего в документе нет. Консистентность: доля "
        "вставленных ответов, учтённых в "
        "`user_stats.total_answers_lifetime`. Строка COUNT(*): в документе это чтение; "
        f"измерена медиана COUNT(*) по {ru(f'{r.sizes.read_answers:,}')} ответам одного "
        "пользователя после ANALYZE (пишет такая схема голым INSERT)."
    )


def _claims_concurrent(r: CompareResult) -> str:
    rows = []
    for key, doc, name in _DOC_ROWS:
        c = r.concurrent_of(key, same_user=True)
        if c is None:
            continue
        claim = DOC_CONCURRENT[doc]
        lost = c.accounting.lost or 0
        rows.append(
            [
                name.replace(" (BEST)", "").replace("воркер)", "воркер, после разбора)"),
                _beside(claim[0], f"потеряно {lost} из {c.accounting.inserted}"),
                _beside(claim[1], "да" if lost else "нет"),
                f"{claim_ru(claim[2])} (не измерялась)",
            ]
        )
    writers = r.budget.writers if r.budget else r.sizes.writers
    rounds = f", раундов: {r.sizes.rounds}" if r.sizes.rounds > 1 else ""
    return (
        f"**Одновременно: {plural(writers, WRITERS)} × {plural(r.sizes.per_writer, INSERTS)}"
        f"{rounds}, один пользователь** (заявлено в документе → измерено)\n\n"
        + _table(["Метод", "Гонки (потерянные инкременты)", "Потеря данных", "Сложность"], rows)
        + "\n\nЗвёздочкой отмечено то, чего в документе нет. Потеряно: вставлено ответов "
        "минус то, на сколько вырос "
        "`user_stats.total_answers_lifetime`; у каждого писателя своя сессия одного и того же "
        "пользователя, стартуют все разом."
    )


def section_summary(r: CompareResult) -> str:
    """Every strategy in one table: the figures the analysis argues from."""
    rows = []
    for key in r.strategies:
        s = r.sequential_of(key)
        same, many = r.concurrent_of(key, same_user=True), r.concurrent_of(key, same_user=False)
        rows.append(
            [
                SHORT_RU.get(key, SHORT.get(key, key)),
                ms_ru(s.latency.avg_ms) if s else "= голый INSERT",
                ru(times(s.latency_vs_floor)) if s else "",
                _lost_cell(same),
                rate_ru(same.per_second) if same else "-",
                rate_ru(many.per_second) if many else "-",
                _bulk_rate(r, key),
            ]
        )
    writers = r.budget.writers if r.budget else r.sizes.writers
    headers = [
        "стратегия",
        "вставка, среднее",
        "к голому INSERT",
        f"{plural(writers, WRITERS)} на одного: потеряно",
        "один пользователь: вставок/с",
        f"{plural(writers, USERS)}: вставок/с",
        f"INSERT ... SELECT {ru(f'{r.sizes.bulk_rows:,}')} строк: строк/с",
    ]
    return (
        _table(headers, rows)
        + "\n\nМатериализованное представление и COUNT(*) пишут голым INSERT: их цена "
        "приходится на обновление представления и на чтение. Полные таблицы того же прогона "
        "(перцентили, разброс по раундам, чтения, устаревание представления, отставание "
        "воркера) — в [COUNTER_DECISION_MATRIX.md](COUNTER_DECISION_MATRIX.md)."
    )


def _lost_cell(c: ConcurrentResult | None) -> str:
    if c is None or c.accounting.lost is None:
        return "-"
    return f"{c.accounting.lost} из {c.accounting.inserted}"


def _bulk_rate(r: CompareResult, key: str) -> str:
    b = r.bulk_of(key)
    if b is not None:
        return rate_ru(b.rows_per_second)
    last = r.ladder.steps[-1] if r.ladder and r.ladder.steps else None
    if key != "trigger_007" or last is None or last.rows != r.sizes.bulk_rows:
        return "-"
    if last.cancelled:
        return f"< {rate_ru(last.rows_per_second)} (отменено через {ru(seconds(last.seconds))})"
    return rate_ru(last.rows_per_second)


def section_findings(r: CompareResult) -> str:
    """What the figures say about the document's claims, sentence by sentence."""
    parts = [
        _f_007(r),
        _f_manual(r),
        _f_speed(r),
        _f_bulk(r),
        _f_count(r),
        _f_events(r),
        _f_matview(r),
        _f_pg_ivm(r),
    ]
    return "\n".join(f"- {p}" for p in parts if p)


def _f_007(r: CompareResult) -> str:
    same, many = same_user(r, "trigger_007"), many_users(r, "trigger_007")
    ours = same_user(r, "ours")
    text = (
        f"**Миграция 007 теряет счёт.** {plural(same.writers, WRITERS)} одного пользователя: "
        "потеряно "
        f"{lost(same)} из {same.accounting.inserted} (учтено "
        f"{ru(pct(same.accounting.consistency))}); когда у каждого писателя свой пользователь, "
        f"потеряно {lost(many)}."
    )
    if lost(same):
        text += (
            " `pg_try_advisory_xact_lock` не ждёт: пока блокировку пользователя держит другая "
            "транзакция, триггер молча пропускает все три инкремента, и никто их потом не "
            "добавляет."
        )
    return text + f" Наши триггеры в том же тесте: потеряно {lost(ours)}."


def _f_manual(r: CompareResult) -> str:
    tx, auto, rmw = (same_user(r, k) for k in ("manual_tx", "manual_autocommit", "manual_rmw"))
    seq = [r.sequential_of(k) for k in ("manual_tx", "manual_autocommit", "manual_rmw")]
    shares = ", ".join(ru(pct(s.accounting.consistency)) for s in seq if s is not None)
    exact = lost(tx) == 0 and lost(auto) == 0 and all(s and s.accounting.lost == 0 for s in seq)
    text = (
        "**Ручной UPDATE: «70–85% консистентности» и «15–30 гонок» не подтвердились.**"
        if exact
        else "**Ручной UPDATE, измерено.**"
    )
    text += (
        f" Один писатель, {plural(r.sizes.inserts, INSERTS)}: учтено {shares} (одна "
        f"транзакция, autocommit, read-modify-write). {plural(tx.writers, WRITERS)} одного "
        f"пользователя: `n = n + 1` в одной транзакции потерял {lost(tx)}, в отдельных "
        f"autocommit-операторах {lost(auto)}, read-modify-write — {lost(rmw)} из "
        f"{rmw.accounting.inserted}."
    )
    if exact and lost(rmw):
        text += (
            " Теряет не UPDATE (построчная блокировка выстраивает инкременты в очередь), а "
            "приложение, которое читает значение и записывает вычисленное."
        )
    return text


def _f_speed(r: CompareResult) -> str:
    get = r.sequential_of
    bare, tx, t007, ours = get("bare"), get("manual_tx"), get("trigger_007"), get("ours")
    if bare is None or tx is None or t007 is None or ours is None:
        return ""
    text = (
        f"**Цена одиночной вставки.** Голый INSERT {ms_ru(bare.latency.avg_ms)}; ручной UPDATE "
        f"в той же транзакции {ms_ru(tx.latency.avg_ms)} ({ru(times(tx.latency_vs_floor))}); "
        f"миграция 007 {ms_ru(t007.latency.avg_ms)} ({ru(times(t007.latency_vs_floor))}); наши "
        f"триггеры {ms_ru(ours.latency.avg_ms)} ({ru(times(ours.latency_vs_floor))})."
    )
    if tx.latency.avg_ms > ours.latency.avg_ms:
        text += (
            " Ручной UPDATE медленнее триггера: это пять лишних обращений к серверу (BEGIN, "
            "три UPDATE, COMMIT), а триггер делает ту же работу внутри самого INSERT."
        )
    return text


def _f_bulk(r: CompareResult) -> str:
    ladder, ours = r.ladder, r.bulk_of("ours")
    done = [s for s in ladder.steps if not s.cancelled] if ladder else []
    if ladder is None or len(done) < 2 or ours is None:
        return ""
    first, last, final = done[0], done[-1], ladder.steps[-1]
    if final.cancelled:
        outcome = (
            f"{ru(f'{final.rows:,}')} строк не уложились в {ru(seconds(final.seconds))} и "
            "были отменены"
        )
    else:
        outcome = f"{ru(f'{final.rows:,}')} строк заняли {ru(seconds(final.seconds))}"
    return (
        f"**Массовая вставка.** Построчный триггер миграции 007: "
        f"{rate_ru(first.rows_per_second, ' строк/с')} при {ru(f'{first.rows:,}')} строках и "
        f"{rate_ru(last.rows_per_second, ' строк/с')} при {ru(f'{last.rows:,}')} (чем больше "
        f"оператор, тем медленнее каждая строка); {outcome}. Наши statement-level триггеры "
        f"вставили {ru(f'{ours.rows:,}')} строк со скоростью "
        f"{rate_ru(ours.rows_per_second, ' строк/с')} ({ru(times(ours.throughput_vs_floor))} "
        "от голого INSERT)."
    )


def _f_count(r: CompareResult) -> str:
    cold, warm = r.read_of("count_star", "cold"), r.read_of("count_star", "warm")
    counter = r.read_of("counter", "warm")
    if cold is None or warm is None or counter is None:
        return ""
    ratio = warm.latency.p50_ms / counter.latency.p50_ms
    costs = (
        f"COUNT(*) дороже в {plural(int(f'{ratio:.0f}'), TIMES)} даже в тёплом состоянии"
        if ratio >= 2
        else "при таком числе ответов COUNT(*) ещё почти не дороже"
    )
    return (
        f"**COUNT(*) на каждое чтение.** {ru(f'{r.sizes.read_answers:,}')} ответов одного "
        f"пользователя: медиана {ms_ru(cold.latency.p50_ms)} после ANALYZE, "
        f"{ms_ru(warm.latency.p50_ms)} после VACUUM (index-only scan), против 127 мс в "
        f"документе. Чтение нашего счётчика — {ms_ru(counter.latency.p50_ms)}: {costs}, и "
        "эта цена растёт вместе с числом ответов, а цена счётчика нет."
    )


def _f_events(r: CompareResult) -> str:
    s = r.sequential_of("events")
    if s is None:
        return ""
    text = (
        f"**Событийная схема (outbox + воркер).** {ms_ru(s.latency.avg_ms)} на вставку "
        f"({ru(times(s.latency_vs_floor))} от голого INSERT) против 0,08 мс в документе; к "
        f"концу записи учтено {ru(pct(s.accounting.consistency_at_end))}, после разбора "
        f"очереди {ru(pct(s.accounting.consistency))}."
    )
    if r.drain is not None:
        text += (
            f" Воркер разбирает {rate_ru(r.drain.events_per_second, ' событий/с')} (пачками "
            f"по {r.drain.batch})."
        )
    return text


def _f_matview(r: CompareResult) -> str:
    if r.refresh is None:
        return ""
    stale = [c.staleness for c in r.concurrent if c.strategy == "matview" and c.staleness]
    text = (
        f"**Материализованное представление.** REFRESH занимает "
        f"{ms_ru(r.refresh.refresh_ms)}, REFRESH CONCURRENTLY {ms_ru(r.refresh.concurrently_ms)} "
        f"при {ru(f'{r.refresh.table_rows:,}')} строках ответов и растёт со всей таблицей."
    )
    if stale:
        worst = max(stale, key=lambda st: st.max_age_s)
        most = max(st.max_unreflected for st in stale)
        text += (
            f" Даже при обновлении без пауз ответы не видны в нём до "
            f"{ru(seconds(worst.max_age_s))}, до {most} ответов одновременно."
        )
    return text


def _f_pg_ivm(r: CompareResult) -> str:
    if "pg_ivm" in r.skipped:
        return f"**pg_ivm** в этом прогоне не измерялся: {r.skipped['pg_ivm']}."
    if "pg_ivm" not in r.strategies:
        return ""
    seq, ivm_one, ivm_many = (
        r.sequential_of("pg_ivm"),
        same_user(r, "pg_ivm"),
        many_users(r, "pg_ivm"),
    )
    ours_one, ours_many = same_user(r, "ours"), many_users(r, "ours")
    text = (
        "**pg_ivm (инкрементально поддерживаемые представления, IMMV).** Три IMMV: ответы на "
        "пользователя, на сессию и на пользователя со строкой `digital_personality` "
        "(внутреннее соединение; внешнее с агрегатом pg_ivm не принимает). Это отдельные "
        "таблицы: колонки, которые читает бот, pg_ivm вести не умеет, и все чтения бота "
        "пришлось бы перевести на IMMV."
    )
    if seq is not None:
        text += (
            f" Одиночная вставка: {ms_ru(seq.latency.avg_ms)} "
            f"({ru(times(seq.latency_vs_floor))} от голого INSERT)."
        )
    text += (
        f" {plural(ivm_one.writers, WRITERS)} на одного пользователя: "
        f"{rate_ru(ivm_one.per_second)} ({ru(times(ivm_one.throughput_vs_floor))}), наши "
        f"триггеры {rate_ru(ours_one.per_second)} ({ru(times(ours_one.throughput_vs_floor))}); "
        f"у каждого свой пользователь: {rate_ru(ivm_many.per_second)} "
        f"({ru(times(ivm_many.throughput_vs_floor))}), наши {rate_ru(ours_many.per_second)} "
        f"({ru(times(ours_many.throughput_vs_floor))}). Потеряно: {lost(ivm_one)} и "
        f"{lost(ivm_many)}."
    )
    if ivm_many.per_second / ivm_one.per_second < ours_many.per_second / ours_one.per_second:
        text += (
            " Разнести писателей по пользователям pg_ivm почти не помогает: на каждую запись "
            "он берёт ExclusiveLock на IMMV с GROUP BY до конца транзакции, и писатели разных "
            "пользователей ждут друг друга."
        )
    return text


def section_scaling(r: CompareResult) -> str:
    """The document's scaling guide against what this machine sustained."""
    ours, floor, events = many_users(r, "ours"), many_users(r, "bare"), many_users(r, "events")
    m007 = same_user(r, "trigger_007")
    rows = []
    for users, low, high, recommended in DOC_SCALING:
        top = high if high is not None else low
        span = f"{ru(f'{low:,}')}–{ru(f'{high:,}')}" if high is not None else f"{ru(f'{low:,}')}+"
        rows.append([users, span, recommended, *_scale_row(top, ours, floor, events, m007)])
    intro = (
        f"Ёмкость здесь — то, что выдержали {plural(ours.writers, WRITERS)} с отдельным "
        f"пользователем у каждого на этой машине: наши триггеры {rate_ru(ours.per_second)}, "
        "голый INSERT "
        f"без всякого счётчика {rate_ru(floor.per_second)}, событийная схема "
        f"{rate_ru(events.per_second)}."
    )
    headers = ["Пользователей", "Вставок/с", "Документ советует", "Измерено здесь", "Вывод"]
    return intro + "\n\n" + _table(headers, rows)


def _scale_row(
    top: int,
    ours: ConcurrentResult,
    floor: ConcurrentResult,
    events: ConcurrentResult,
    m007: ConcurrentResult,
) -> list[str]:
    if top <= ours.per_second:
        follows = "наши триггеры, точно"
        if ours.per_second / top < 2:
            follows += "; запаса на этой машине мало, следите за задержкой вставки"
        if lost(m007):
            follows += f"; не миграция 007 (потеряла {lost(m007)} из {m007.accounting.inserted})"
        return [
            f"наши триггеры: {rate_ru(ours.per_second)}, "
            f"{ru(f'{ours.per_second / top:.1f}')}× от верхней границы",
            follows,
        ]
    if top <= floor.per_second:
        return [
            f"выше наших {rate_ru(ours.per_second)}, в пределах голого INSERT "
            f"({rate_ru(floor.per_second)})",
            "цена счётчика начинает сказываться: сервер мощнее или пачки ответов в одном "
            "INSERT (statement-level триггер учитывает пачку одной записью на ключ)",
        ]
    return [
        f"выше даже голого INSERT ({rate_ru(floor.per_second)}, без счётчика)",
        "ни одна схема счётчиков не дотягивает на этом железе: нужна другая машина или "
        f"шардирование самой таблицы ответов (событийная схема: {rate_ru(events.per_second)})",
    ]


SECTIONS: dict[str, Callable[[CompareResult], str]] = {
    "run": section_run,
    "claims": section_claims,
    "findings": section_findings,
    "summary": section_summary,
    "scaling": section_scaling,
}
_TITLES = {
    "run": "Где и как измерено",
    "claims": "Таблицы документа, измеренные",
    "findings": "Что показали измерения",
    "summary": "Все стратегии одной таблицей",
    "scaling": "Масштабирование",
}


# ---- filling the document ----


def problems(path: Path) -> str | None:
    """Why ``path`` (an existing Russian analysis) cannot take the generated sections, or
    None. Checked before measuring, so that minutes of measuring are not lost to a typo."""
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8")
    opened = _OPENING.findall(text)
    closed = [m.group("name") for m in _MARKED.finditer(text)]
    unknown = sorted(set(opened) - set(SECTIONS))
    if unknown:
        return f"{path} has generated sections this release does not know: {', '.join(unknown)}"
    if sorted(opened) != sorted(closed) or len(set(opened)) != len(opened):
        return f"{path}: every <!-- generated: NAME --> needs one <!-- /generated: NAME -->"
    missing = sorted(set(SECTIONS) - set(opened))
    if missing:
        return f"{path} lacks the generated sections {', '.join(missing)}"
    return None


def fill(text: str, r: CompareResult) -> str:
    """``text`` with every generated section rewritten from ``r``; the prose is kept."""
    return _MARKED.sub(
        lambda m: f"{m.group(1)}\n\n{SECTIONS[m.group('name')](r)}\n\n{m.group(4)}", text
    )


def standalone(r: CompareResult) -> str:
    """The sections alone, in their markers: what ``--out DIR`` writes when DIR holds no
    Russian analysis to fill."""
    parts = [
        "# Счётчики Selfology: измеренные разделы анализа",
        "Только сгенерированные разделы `docs/COUNTER_ANALYSIS_RU.md` (прогон ниже). Чтобы "
        "обновить сам документ, запустите `selfology-counters compare --out docs` из корня "
        "репозитория: разделы между маркерами будут переписаны, текст вокруг останется.",
    ]
    for name, render in SECTIONS.items():
        parts.append(
            f"## {_TITLES[name]}\n\n<!-- generated: {name} -->\n\n{render(r)}\n\n"
            f"<!-- /generated: {name} -->"
        )
    return "\n\n".join(parts) + "\n"


def write(r: CompareResult, path: Path) -> Path:
    """Fill the Russian analysis at ``path`` (or write the sections alone there)."""
    text = fill(path.read_text(encoding="utf-8"), r) if path.exists() else standalone(r)
    path.write_text(text, encoding="utf-8")
    return path
