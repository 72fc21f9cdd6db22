"""Every text the bot says, in Russian and English.

Code refers to a text by key (``Text("step.passed", points=25)``) and renders it in the
student's language at the last moment, so that ``lang en`` also changes pending texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("ru", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "help": {
        "ru": (
            "Я Lessonbot: провожу интерактивные уроки. Команды:\n"
            "- `уроки` (`lessons`): список уроков\n"
            "- `начать <урок>` (`start <lesson>`): начать урок\n"
            "- `проверить` (`check`): проверить текущий шаг\n"
            "- `подсказка` (`hint`): подсказка к шагу\n"
            "- `статус` (`status`): где вы сейчас\n"
            "- `стоп` (`stop`): закончить урок без оценки\n"
            "- `заново` (`restart`): начать текущий урок с первого шага\n"
            "- `язык en` (`lang ru|en`): язык ответов\n"
            "- `связать` (`link`): связать аккаунт Google для оценок в Classroom\n"
            "- `связать github <логин>` (`link github <login>`): ваш логин на GitHub для уроков по GitHub"
        ),
        "en": (
            "I am Lessonbot and I run interactive lessons. Commands:\n"
            "- `lessons`: list the lessons\n"
            "- `start <lesson>`: start a lesson\n"
            "- `check`: check the current step\n"
            "- `hint`: a hint for the current step\n"
            "- `status`: where you are\n"
            "- `stop`: end the lesson without a grade\n"
            "- `restart`: start the current lesson again from step 1\n"
            "- `lang ru|en`: the language of my answers\n"
            "- `link`: connect your Google account for grades in Classroom\n"
            "- `link github <login>`: your GitHub login, for the GitHub lessons"
        ),
    },
    "unknown": {
        "ru": "Не понял «{text}». Напишите `помощь`, чтобы увидеть команды.",
        "en": "I did not understand “{text}”. Say `help` to see the commands.",
    },
    "empty": {
        "ru": "Пустое сообщение. Напишите `помощь`, чтобы увидеть команды.",
        "en": "That message was empty. Say `help` to see the commands.",
    },
    "lessons.header": {"ru": "Уроки:", "en": "Lessons:"},
    "lessons.item": {"ru": "- `{id}`: {title} ({steps} шагов, {max_points} баллов)", "en": "- `{id}`: {title} ({steps} steps, {max_points} points)"},
    "lessons.footer": {"ru": "Начать: `начать <урок>`.", "en": "To begin: `start <lesson>`."},
    "lessons.none": {"ru": "Уроков пока нет.", "en": "There are no lessons yet."},
    "start.usage": {"ru": "Какой урок начать? Например: `начать git-basics`.", "en": "Which lesson? For example: `start git-basics`."},
    "start.unknown": {"ru": "Урока «{lesson}» нет. Напишите `уроки`, чтобы увидеть список.", "en": "There is no lesson “{lesson}”. Say `lessons` to see the list."},
    "start.busy": {
        "ru": "Вы уже проходите урок `{lesson}` (шаг {step} из {total}). Напишите `стоп`, чтобы закончить его, или `заново`, чтобы начать сначала.",
        "en": "You are already in lesson `{lesson}` (step {step} of {total}). Say `stop` to end it, or `restart` to begin it again.",
    },
    "start.resume": {
        "ru": "С возвращением в урок «{title}»: вы на шаге {step} из {total}, баллы: {points} из {max_points}. Продолжаем (начать сначала: `заново`).",
        "en": "Welcome back to “{title}”: you are at step {step} of {total}, with {points} of {max_points} points. Let us go on (to begin again: `restart`).",
    },
    "start.ok": {"ru": "Начинаем урок «{title}». Шагов: {total}, баллов: {max_points}.", "en": "Starting “{title}”: {total} steps, {max_points} points."},
    "step.say": {"ru": "**Шаг {step} из {total}.** {text}", "en": "**Step {step} of {total}.** {text}"},
    "step.passed": {"ru": "✅ Шаг {step} пройден (+{points}). Баллы: {total_points}.", "en": "✅ Step {step} passed (+{points}). Points: {total_points}."},
    "step.not_yet": {"ru": "Пока нет: {reason}", "en": "Not yet: {reason}"},
    "step.error": {
        "ru": "Не получилось проверить шаг: {reason}. Попробуйте `проверить` чуть позже.",
        "en": "I could not check this step: {reason}. Try `check` again in a moment.",
    },
    "step.answer_expected": {"ru": "На этот шаг нужно ответить текстом: просто напишите ответ.", "en": "This step wants an answer: just type it."},
    "answer.wrong": {"ru": "Неверно, попробуйте ещё раз. Нужна подсказка? Напишите `подсказка`.", "en": "Not right, try again. Need help? Say `hint`."},
    "hint.text": {"ru": "Подсказка: {text}", "en": "Hint: {text}"},
    "hint.none": {"ru": "У этого шага нет подсказки. Перечитайте задание: `статус`.", "en": "This step has no hint. Read the task again: `status`."},
    "no_run": {"ru": "Сейчас вы не проходите урок. Напишите `уроки`, чтобы выбрать.", "en": "You are not in a lesson now. Say `lessons` to pick one."},
    "status.run": {"ru": "Урок `{lesson}`: шаг {step} из {total}, баллы {points} из {max_points}.", "en": "Lesson `{lesson}`: step {step} of {total}, {points} of {max_points} points."},
    "stop.ok": {
        "ru": "Урок `{lesson}` остановлен без оценки; набранные баллы ({points}) сохранены в истории. Начать снова: `начать {lesson}`.",
        "en": "Lesson `{lesson}` stopped without a grade; your {points} points stay on record. To begin again: `start {lesson}`.",
    },
    "restart.none": {"ru": "Нечего начинать заново: вы ещё не проходили уроков. Напишите `уроки`.", "en": "Nothing to restart: you have not taken a lesson yet. Say `lessons`."},
    "admin.help": {
        "ru": "Команды администратора:\n- `admin status` — отчёт `manage.py status`\n- `admin grades sync` — отправить ждущие оценки сейчас\n- `admin logs ship` — отправить логи на Drive сейчас\n- `admin backup` — резервная копия базы\n- `admin student EMAIL` — прохождения и оценки студента\n- `admin help` — эта справка",
        "en": "Admin commands:\n- `admin status` — the report of `manage.py status`\n- `admin grades sync` — send the waiting grades now\n- `admin logs ship` — ship the logs to Drive now\n- `admin backup` — back the database up\n- `admin student EMAIL` — a student's runs and grades\n- `admin help` — this list",
    },
    "admin.unknown": {"ru": "Такой команды администратора нет. Напишите `admin help`.", "en": "There is no such admin command. Say `admin help`."},
    "admin.started": {"ru": "`admin {command}`: начато, напишу, когда закончу.", "en": "`admin {command}`: started; I will write when it is done."},
    "admin.result": {"ru": "`admin {command}`:\n```text\n{result}\n```", "en": "`admin {command}`:\n```text\n{result}\n```"},
    "admin.failed": {"ru": "`admin {command}` не удалось: {result}", "en": "`admin {command}` failed: {result}"},
    "restart.ok": {"ru": "Начинаем урок `{lesson}` заново с первого шага.", "en": "Starting lesson `{lesson}` again from step 1."},
    "admin.stopped": {
        "ru": "Преподаватель остановил ваш урок `{lesson}`; набранные баллы ({points}) сохранены в истории. Начать снова: `начать {lesson}`.",
        "en": "Your teacher stopped your lesson `{lesson}`; your {points} points stay on record. To begin again: `start {lesson}`.",
    },
    "admin.restarted": {"ru": "Преподаватель начал ваш урок `{lesson}` заново: снова с первого шага.", "en": "Your teacher restarted your lesson `{lesson}`: you begin again from step 1."},
    "completed": {
        "ru": "🎉 Урок «{title}» пройден! Итог: {points} из {max_points}.",
        "en": "🎉 You finished “{title}”! Score: {points} of {max_points}.",
    },
    "lang.ok": {"ru": "Теперь я отвечаю по-русски.", "en": "I will answer in English now."},
    "lang.usage": {"ru": "Язык: `язык ru` или `язык en`.", "en": "Language: `lang ru` or `lang en`."},
    "reminder": {
        "ru": "Напоминание: урок `{lesson}` ждёт вас на шаге {step} из {total}. Напишите `статус`, чтобы увидеть задание.",
        "en": "Reminder: lesson `{lesson}` is waiting for you at step {step} of {total}. Say `status` to see the task.",
    },
    "timeout": {
        "ru": "Урок `{lesson}` остановлен: вы не появлялись {days} дней. Начать снова: `начать {lesson}`.",
        "en": "Lesson `{lesson}` was stopped after {days} days without activity. To begin again: `start {lesson}`.",
    },
    "zulip.dead_letter": {
        "ru": "Извините, я не смог обработать ваше последнее сообщение. Администратор уже знает об этом; попробуйте написать ещё раз чуть позже.",
        "en": "Sorry, I could not handle your last message. An administrator has been told; please try again a little later.",
    },
    "zulip.not_subscribed": {"ru": "вы ещё не подписаны на канал #**{stream}**", "en": "you are not subscribed to #**{stream}** yet"},
    "zulip.no_post": {"ru": "с начала урока в канале #**{stream}** нет вашего сообщения", "en": "there is no message from you in #**{stream}** since the lesson started"},
    "zulip.no_post_topic": {"ru": "с начала урока в #**{stream}>{topic}** нет вашего сообщения", "en": "there is no message from you in #**{stream}>{topic}** since the lesson started"},
    "zulip.no_code_block": {"ru": "с начала урока у вас нет сообщения с блоком кода (```)", "en": "none of your messages since the lesson started has a code block (```)"},
    "zulip.no_mention": {"ru": "с начала урока вы никого не упомянули (@**Имя**)", "en": "none of your messages since the lesson started mentions anyone (@**Name**)"},
    "zulip.no_reaction": {"ru": "вы ещё не поставили реакцию ни на одно моё сообщение", "en": "you have not reacted to any of my messages yet"},
    "zulip.no_reaction_emoji": {"ru": "вы ещё не поставили реакцию :{emoji}: на моё сообщение", "en": "you have not reacted with :{emoji}: to my message yet"},
    "zulip.unavailable": {"ru": "Zulip сейчас не отвечает", "en": "Zulip is not answering right now"},
    "zulip.not_configured": {"ru": "бот не подключён к Zulip (спросите администратора)", "en": "the bot is not connected to Zulip (ask an administrator)"},
    "git.clone": {
        "ru": "Ваш репозиторий для этого урока:\n```\ngit clone {url}\n```",
        "en": "Your repository for this lesson:\n```\ngit clone {url}\n```",
    },
    "git.clone_credentials": {
        "ru": "Логин: `{user}`, пароль: `{password}` (только для этого репозитория).",
        "en": "User name: `{user}`, password: `{password}` (for this repository only).",
    },
    "git.push_received": {"ru": "Получил ваш push.", "en": "Got your push."},
    "git.empty_repo": {"ru": "в репозитории ещё нет ни одного коммита — сделайте commit и push", "en": "the repository has no commits yet — commit and push"},
    "git.no_branch": {"ru": "ветки `{branch}` в репозитории пока нет — создайте её и сделайте push", "en": "there is no branch `{branch}` yet — create it and push it"},
    "git.few_commits": {
        "ru": "на ветке `{branch}` {count} коммит(ов), нужно хотя бы {min}",
        "en": "branch `{branch}` has {count} commit(s), it needs at least {min}",
    },
    "git.no_commit_message": {"ru": "на ветке `{branch}` нет коммита с «{text}» в сообщении", "en": "no commit on `{branch}` has “{text}” in its message"},
    "git.no_file": {"ru": "на ветке `{branch}` нет файла `{path}`", "en": "there is no file `{path}` on branch `{branch}`"},
    "git.file_content": {"ru": "файл `{path}` на ветке `{branch}` не содержит «{text}»", "en": "file `{path}` on branch `{branch}` does not contain “{text}”"},
    "git.no_merge": {"ru": "на ветке `{branch}` нет merge-коммита", "en": "there is no merge commit on branch `{branch}`"},
    "git.merge_missing_branch": {"ru": "ветка `{merged}` ещё не влита в `{branch}`", "en": "branch `{merged}` is not merged into `{branch}` yet"},
    "git.no_tag": {"ru": "тега `{tag}` пока нет — создайте его и отправьте: `git push origin {tag}`", "en": "there is no tag `{tag}` yet — create it and push it: `git push origin {tag}`"},
    "git.tag_not_annotated": {"ru": "тег `{tag}` должен быть аннотированным (`git tag -a`)", "en": "tag `{tag}` should be annotated (`git tag -a`)"},
    "git.unavailable": {"ru": "репозиторий недоступен", "en": "the repository is not available"},
    "check.crashed": {"ru": "у бота сбой, администраторы увидят его в журнале", "en": "something broke on the bot's side; the admins will see it in the log"},
    "git.file_too_large": {
        "ru": "файл `{path}` на ветке `{branch}` занимает {size} — проверяются файлы до {limit}; уменьшите его и сделайте push",
        "en": "file `{path}` on branch `{branch}` is {size}; files up to {limit} are checked — make it smaller and push",
    },
    # Google: linking a student's account, and grades that cannot go to Classroom yet.
    "link.url": {
        "ru": "Чтобы оценки попадали в Google Classroom, войдите в тот аккаунт Google, с которым вы в курсе: {url}\nСсылка одноразовая и действует сутки.",
        "en": "To get your grades into Google Classroom, sign in with the Google account you use in the course: {url}\nThe link works once, for a day.",
    },
    "link.usage": {"ru": "Напишите `связать` (аккаунт Google) или `связать github <логин>` (ваш логин на GitHub).", "en": "Say `link` (a Google account) or `link github <login>` (your GitHub login)."},
    # GitHub: the student's login, the run's repository, the github.* checks.
    "github.link_bad_login": {"ru": "«{login}» не похоже на логин GitHub: буквы, цифры и дефисы, до 39 знаков. Пример: `связать github octocat`.", "en": "“{login}” does not look like a GitHub login: letters, digits and hyphens, up to 39 characters. Example: `link github octocat`."},
    "github.link_taken": {"ru": "Логин GitHub `{login}` уже подтверждён другим студентом. Если это ваш аккаунт, сообщите преподавателю.", "en": "The GitHub login `{login}` is already confirmed by another student. If it is your account, please tell your teacher."},
    "github.link_claimed": {"ru": "Запомнил ваш логин GitHub: `{login}`. В уроке по GitHub я приглашу этот аккаунт в ваш репозиторий; принятое приглашение подтвердит, что аккаунт ваш.", "en": "Noted your GitHub login: `{login}`. In a GitHub lesson I will invite this account to your repository; accepting the invitation confirms the account is yours."},
    "github.link_confirmed": {"ru": "Логин GitHub `{login}` уже связан с вами и подтверждён.", "en": "The GitHub login `{login}` is already linked to you and confirmed."},
    "github.link_first": {"ru": "Для этого урока нужен ваш логин на GitHub. Напишите `связать github <логин>` и потом снова `начать`.", "en": "This lesson needs your GitHub login. Say `link github <login>`, then `start` again."},
    "github.not_configured": {"ru": "GitHub у бота пока не настроен. Сообщите преподавателю.", "en": "GitHub is not set up for the bot yet. Please tell your teacher."},
    "github.no_template": {"ru": "Не нашёл шаблон урока `{template}` на GitHub. Сообщите преподавателю.", "en": "I did not find the lesson's template repository `{template}` on GitHub. Please tell your teacher."},
    "github.no_such_user": {"ru": "На GitHub нет пользователя `{login}`, поэтому репозиторий для урока я не создал. Проверьте логин, напишите `связать github <логин>` ещё раз и потом `начать`.", "en": "There is no GitHub user `{login}`, so I did not create your lesson repository. Check the login, say `link github <login>` again, then `start`."},
    "github.setup_failed": {"ru": "GitHub сейчас не отвечает, репозиторий для урока создать не удалось. Попробуйте `начать` через несколько минут.", "en": "GitHub is not answering right now, so I could not create your lesson repository. Try `start` again in a few minutes."},
    "github.repo_preparing": {"ru": "Готовлю ваш репозиторий на GitHub и приглашение для `{login}`; пришлю ссылку, как только он будет готов.", "en": "I am preparing your GitHub repository and an invitation for `{login}`; I will send the link as soon as it is ready."},
    "github.repo_not_ready": {"ru": "ваш репозиторий на GitHub ещё готовится — я пришлю ссылку, как только он будет готов", "en": "your GitHub repository is still being prepared — I will send the link as soon as it is ready"},
    "github.repo_ready": {
        "ru": "Ваш репозиторий для урока: {url}\nЯ пригласил туда аккаунт `{login}`: примите приглашение на {url}/invitations (или в письме от GitHub). Клонировать: `git clone {clone_url}`",
        "en": "Your lesson repository: {url}\nI invited the account `{login}`: accept the invitation at {url}/invitations (or in GitHub's email). Clone it with `git clone {clone_url}`",
    },
    "github.unavailable": {"ru": "GitHub сейчас не отвечает, проверю позже", "en": "GitHub is not answering right now; I will check again later"},
    "github.paused": {"ru": "GitHub просит подождать (лимит запросов), проверю позже", "en": "GitHub asks us to wait (its rate limit); I will check again later"},
    "github.repo_missing": {"ru": "репозиторий `{repo}` на GitHub не найден — сообщите преподавателю", "en": "the repository `{repo}` is not found on GitHub — please tell your teacher"},
    "github.no_repo": {"ru": "у этого урока нет репозитория на GitHub — начните урок заново (`заново`)", "en": "this run has no GitHub repository — restart the lesson (`restart`)"},
    "github.invitation_pending": {"ru": "приглашение для `{login}` ещё не принято — откройте {url}/invitations", "en": "the invitation for `{login}` is not accepted yet — open {url}/invitations"},
    "github.login_taken": {"ru": "логин `{login}` подтверждён другим студентом — сообщите преподавателю", "en": "the login `{login}` is confirmed by another student — please tell your teacher"},
    "github.no_branch": {"ru": "ветки `{branch}` на GitHub пока нет — создайте её и сделайте `git push -u origin {branch}`", "en": "there is no branch `{branch}` on GitHub yet — create it and `git push -u origin {branch}`"},
    "github.no_file": {"ru": "на ветке `{branch}` на GitHub нет файла `{path}` — закоммитьте его и сделайте push", "en": "there is no file `{path}` on branch `{branch}` on GitHub — commit it and push"},
    "github.file_content": {"ru": "файл `{path}` на ветке `{branch}` не содержит «{text}»", "en": "file `{path}` on branch `{branch}` does not contain “{text}”"},
    "github.no_pull": {"ru": "pull request из ветки `{head}` в `{base}` пока не открыт", "en": "no pull request from `{head}` into `{base}` is open yet"},
    "github.pull_by_other": {"ru": "pull request из `{head}` открыт не вами — откройте его со своего аккаунта `{login}`", "en": "the pull request from `{head}` was not opened by you — open it from your account `{login}`"},
    "github.pull_not_merged": {"ru": "pull request #{number} ещё не слит — нажмите «Merge pull request»", "en": "pull request #{number} is not merged yet — click “Merge pull request”"},
    "github.no_review": {"ru": "у pull request #{number} пока нет отзыва «{state}»", "en": "pull request #{number} has no “{state}” review yet"},
    "github.no_label": {"ru": "ни у одного issue или pull request нет метки `{label}`", "en": "no issue or pull request has the label `{label}` yet"},
    "github.no_workflow_run": {"ru": "на ветке `{branch}` ещё не запускался ни один workflow — добавьте файл в `.github/workflows/` и сделайте push", "en": "no workflow has run on branch `{branch}` yet — add a file under `.github/workflows/` and push"},
    "github.workflow_running": {"ru": "workflow на ветке `{branch}` ещё идёт: {url}", "en": "the workflow on branch `{branch}` is still running: {url}"},
    "github.workflow_failed": {"ru": "последний запуск workflow на ветке `{branch}` завершился с результатом `{conclusion}` — посмотрите журнал {url}, исправьте и сделайте push", "en": "the latest workflow run on branch `{branch}` ended `{conclusion}` — read its log at {url}, fix it and push"},
    "github.review_summary": {"ru": "Спасибо за pull request! Я прошу одно изменение: посмотрите мой комментарий к `{path}` (строка {line}), ответьте на него в его обсуждении и отправьте исправление в эту же ветку.", "en": "Thanks for the pull request! I am requesting one change: see my comment on `{path}` (line {line}), answer it in its thread and push the fix to the same branch."},
    "github.review_coming": {"ru": "я отправляю свой отзыв на pull request #{number} — загляните туда через минуту", "en": "I am sending my review of pull request #{number} — look there in a minute"},
    "github.review_failed": {"ru": "я не смог оставить отзыв на pull request #{number} — сообщите преподавателю", "en": "I could not post my review of pull request #{number} — please tell your teacher"},
    "github.review_unanswered": {"ru": "вы ещё не ответили на мой комментарий к `{path}` — нажмите «Reply» под ним: {url}", "en": "you have not answered my comment on `{path}` yet — click “Reply” under it: {url}"},
    "github.review_not_fixed": {"ru": "в `{path}` на ветке `{branch}` ещё нет «{text}» — исправьте файл, закоммитьте и сделайте push", "en": "`{path}` on branch `{branch}` does not contain “{text}” yet — fix the file, commit and push"},
    "github.no_issue_closed": {"ru": "нет закрытого issue — откройте issue и закройте его коммитом или PR с «Fixes #номер»", "en": "no issue is closed yet — open an issue and close it with a commit or PR saying “Fixes #number”"},
    "link.unavailable": {"ru": "Связать аккаунт Google сейчас нельзя: Google не настроен. Сообщите преподавателю.", "en": "Linking a Google account is not possible right now: Google is not set up. Please tell your teacher."},
    "link.done": {"ru": "Аккаунт Google связан с вами. Оценки пойдут в Classroom. Если это были не вы, напишите `связать` и войдите в свой аккаунт.", "en": "A Google account is now linked to you. Grades will go to Classroom. If that was not you, say `link` and sign in with your own account."},
    "grade.kept": {
        "ru": "Ваша оценка за урок «{title}», {points} из {max_points}, сохранена. Этот Lessonbot пока не подключён к Google: когда администратор его подключит, оценка попадёт в задание урока в вашем курсе Google Classroom. Вам ничего делать не нужно.",
        "en": "Your grade for “{title}”, {points} of {max_points}, is kept. This Lessonbot is not connected to Google yet: once an administrator connects it, the grade goes to the lesson's assignment in your Google Classroom course. There is nothing for you to do.",
    },
    "grade.not_enrolled": {
        "ru": "Оценку за урок `{lesson}` пока некуда записать: я не нашёл вас ни в одном курсе Google Classroom. Напишите `link` и войдите в аккаунт Google, с которым вы в курсе; оценка подождёт.",
        "en": "Your grade for `{lesson}` has nowhere to go yet: I did not find you in any Google Classroom course. Say `link` and sign in with the Google account you use in the course; the grade will wait.",
    },
}


@dataclass(frozen=True)
class Text:
    """A message key with its parameters; rendered in a language when sent."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, key: str, **params: Any) -> None:
        if key not in MESSAGES:
            raise KeyError(f"no message {key!r}")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "params", params)

    def render(self, language: str) -> str:
        template = MESSAGES[self.key].get(language) or MESSAGES[self.key]["en"]
        values = {name: _render_value(value, language) for name, value in self.params.items()}
        return template.format(**values)


def _render_value(value: Any, language: str) -> Any:
    if isinstance(value, Text):
        return value.render(language)
    if isinstance(value, Mapping) and set(value) >= set(LANGUAGES):
        return value.get(language) or value["en"]
    if all(hasattr(value, name) for name in LANGUAGES):  # a lesson's Localized text
        return getattr(value, language, None) or value.en
    return value


def render_all(texts: list[Text], language: str) -> list[str]:
    return [text.render(language) for text in texts]
