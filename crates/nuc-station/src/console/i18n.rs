//! The console's words in Kazakh and Russian: the labels of the page (served as `/i18n.json`)
//! and, for every reason code the operator may meet, what happened and what to do next.
//!
//! It owns the texts only. It must never put data into them (names, IINs, numbers are shown
//! by the page next to the text, never formatted into it), so a translation cannot leak or
//! garble what the registry or the NUC said.

use serde_json::{Map, Value, json};

/// One label of the page: key, Kazakh, Russian.
type Label = (&'static str, &'static str, &'static str);

const UI: &[Label] = &[
    (
        "title",
        "ХҚКО операторының жұмыс орны — ҰКО РК",
        "Рабочее место оператора ЦОН — НУЦ РК",
    ),
    ("lang", "Тіл", "Язык"),
    (
        "skip",
        "Негізгі мазмұнға өту",
        "Перейти к основному содержимому",
    ),
    ("login.heading", "Кіру", "Вход"),
    (
        "login.pin",
        "Оператор токенінің PIN-коды",
        "PIN-код токена оператора",
    ),
    ("login.submit", "Кіру", "Войти"),
    (
        "login.hint",
        "PIN-код тек осы компьютердегі агентке жіберіледі және сақталмайды.",
        "PIN-код передаётся только агенту на этом компьютере и не сохраняется.",
    ),
    ("logout", "Шығу", "Выйти"),
    ("operator", "Оператор", "Оператор"),
    (
        "session.left",
        "Сеанс әрекетсіз аяқталғанға дейін, мин",
        "До завершения сеанса при бездействии, мин",
    ),
    ("live.ok", "Агентпен байланыс бар", "Связь с агентом есть"),
    ("live.lost", "Агентпен байланыс жоқ", "Нет связи с агентом"),
    (
        "search.heading",
        "Өтініш берушіні ЖСН бойынша іздеу",
        "Поиск заявителя по ИИН",
    ),
    ("search.iin", "ЖСН (12 сан)", "ИИН (12 цифр)"),
    (
        "search.bin",
        "БСН (заңды тұлға қызметкері үшін, міндетті емес)",
        "БИН (для сотрудника юрлица, необязательно)",
    ),
    ("search.submit", "Тізілімнен іздеу", "Найти в реестре"),
    (
        "search.compare",
        "Деректерді жеке куәлікпен салыстырыңыз.",
        "Сверьте данные с удостоверением личности.",
    ),
    ("field.iin", "ЖСН", "ИИН"),
    ("field.bin", "БСН", "БИН"),
    ("field.surname", "Тегі", "Фамилия"),
    ("field.name", "Аты", "Имя"),
    ("field.patronymic", "Әкесінің аты", "Отчество"),
    ("field.organization", "Ұйым", "Организация"),
    ("field.role", "Лауазымы", "Должность"),
    ("field.email", "Электрондық пошта", "Электронная почта"),
    ("field.state", "Күйі", "Состояние"),
    (
        "field.registered_at",
        "Тіркелген уақыты",
        "Зарегистрирована",
    ),
    ("field.expires_at", "Мерзімі", "Действует до"),
    ("field.number", "Өтінім нөмірі", "Номер заявки"),
    ("app.heading", "F1 өтінімі", "Заявка F1"),
    (
        "app.number",
        "Өтінім нөмірі (NUC-…)",
        "Номер заявки (NUC-…)",
    ),
    ("app.find", "Өтінімді ашу", "Открыть заявку"),
    (
        "app.confirm",
        "Растау және куәліктерді шығару",
        "Подтвердить и выпустить сертификаты",
    ),
    ("app.refuse", "Бас тарту", "Отказать"),
    ("app.reason", "Бас тарту себебі", "Причина отказа"),
    ("app.done", "Шешім қабылданды", "Решение принято"),
    (
        "app.certificates",
        "Шығарылған куәліктер",
        "Выпущенные сертификаты",
    ),
    (
        "state.REGISTERED",
        "Тіркелген, ХҚКО-ға келуді күтуде",
        "Зарегистрирована, ожидает визита в ЦОН",
    ),
    ("state.CONFIRMED", "Расталған", "Подтверждена"),
    ("state.VERIFIED", "Тексерілген", "Проверена"),
    (
        "state.ISSUED",
        "Куәліктер шығарылды",
        "Сертификаты выпущены",
    ),
    ("state.REFUSED", "Бас тартылды", "Отказано"),
    ("state.EXPIRED", "Мерзімі өтті", "Срок истёк"),
    ("state.REVOKED", "Кері қайтарылды", "Отозвана"),
    ("error.heading", "Орындалмады", "Не выполнено"),
    ("error.code", "Себеп коды", "Код причины"),
    ("error.next", "Не істеу керек", "Что делать"),
    ("busy", "Орындалуда…", "Выполняется…"),
];

/// Plain words for a reason code: (Kazakh what, Kazakh next, Russian what, Russian next).
type Words = (&'static str, &'static str, &'static str, &'static str);

fn words(code: &str) -> Words {
    match code {
        "FOREIGN_ORIGIN" | "WRONG_HOST" | "ORIGIN_REQUIRED" => (
            "Сұрау консольдің өз бетінен келмеді, агент оны қабылдамады.",
            "Консольді тек http://127.0.0.1 мекенжайы бойынша ашыңыз.",
            "Запрос пришёл не со страницы консоли, агент его не принял.",
            "Открывайте консоль только по адресу http://127.0.0.1.",
        ),
        "NO_SESSION" | "SESSION_INVALID" => (
            "Сеанс жоқ.",
            "Токеннің PIN-кодымен қайта кіріңіз.",
            "Сеанса нет.",
            "Войдите снова с PIN-кодом токена.",
        ),
        "SESSION_EXPIRED" => (
            "Сеанс әрекетсіздіктен аяқталды.",
            "Токеннің PIN-кодымен қайта кіріңіз.",
            "Сеанс завершён из-за бездействия.",
            "Войдите снова с PIN-кодом токена.",
        ),
        "PIN_INCORRECT" => (
            "Токеннің PIN-коды қате.",
            "PIN-кодты қайта енгізіңіз; бірнеше қате әрекеттен кейін токен бұғатталады.",
            "Неверный PIN-код токена.",
            "Введите PIN-код ещё раз; после нескольких ошибок токен блокируется.",
        ),
        "PIN_LOCKED" => (
            "Токеннің PIN-коды бұғатталған.",
            "Токенді бұғаттан шығару үшін қауіпсіздік әкімшісіне хабарласыңыз.",
            "PIN-код токена заблокирован.",
            "Обратитесь к администратору безопасности для разблокировки токена.",
        ),
        "TOKEN" => (
            "Оператор токені жауап бермеді.",
            "Токеннің қосылғанын тексеріп, қайталаңыз.",
            "Токен оператора не ответил.",
            "Проверьте, что токен подключён, и повторите.",
        ),
        "INVALID_INPUT" | "INVALID_ARGUMENT" => (
            "Енгізілген дерек дұрыс емес.",
            "Өрісті түзетіп, қайталаңыз.",
            "Введённые данные неверны.",
            "Исправьте поле и повторите.",
        ),
        "APPLICANT_NOT_IN_REGISTRY" => (
            "Тізілімде (ЖТ/ЗТ МДҚ) мұндай ЖСН жоқ.",
            "ЖСН-ды жеке куәлікпен салыстырыңыз; дұрыс болса, өтініш берушіні ХҚКО-ға жіберіңіз.",
            "В реестре (ГБД ФЛ/ЮЛ) нет такого ИИН.",
            "Сверьте ИИН с удостоверением; если он верен, направьте заявителя в ЦОН для исправления данных в реестре.",
        ),
        "UNAVAILABLE" | "NUC_UNREACHABLE" => (
            "ҰКО немесе тізілім қазір жауап бермейді; ештеңе сақталмады.",
            "Бір минуттан кейін қайталаңыз; қайталанса, қолдау қызметіне хабарласыңыз.",
            "НУЦ или реестр сейчас не отвечает; ничего не сохранено.",
            "Повторите через минуту; если повторится, обратитесь в поддержку.",
        ),
        "REQUEST_NOT_FOUND" => (
            "Мұндай нөмірмен өтінім жоқ.",
            "Нөмірді өтініш берушінің хатымен салыстырыңыз.",
            "Заявки с таким номером нет.",
            "Сверьте номер с письмом заявителя.",
        ),
        "REQUEST_STATE" => (
            "Өтінім бұл әрекетке жарамайтын күйде.",
            "Өтінімді қайта ашып, оның күйін қараңыз.",
            "Заявка в состоянии, не допускающем это действие.",
            "Откройте заявку заново и посмотрите её состояние.",
        ),
        "REQUEST_EXPIRED" => (
            "Өтінімнің мерзімі өтті (30 күн).",
            "Өтініш беруші жаңа өтінім беруі керек.",
            "Срок заявки истёк (30 дней).",
            "Заявителю нужно подать новую заявку.",
        ),
        "OPERATOR_SUSPENDED" | "OPERATOR_DISMISSED" | "OPERATOR_NOT_FOUND" => (
            "Оператордың өкілеттігі жарамсыз.",
            "ҰКО әкімшісіне хабарласыңыз; бұл өтінімді басқа оператор шеше алады.",
            "Полномочия оператора недействительны.",
            "Обратитесь к администратору НУЦ; эту заявку может решить другой оператор.",
        ),
        "SEPARATION_OF_DUTIES" => (
            "Оператор өз өтінімін шеше алмайды.",
            "Өтінімді басқа операторға беріңіз.",
            "Оператор не может решать собственную заявку.",
            "Передайте заявку другому оператору.",
        ),
        "OPERATOR_SIGNATURE_INVALID"
        | "PAYLOAD_EXPIRED"
        | "PAYLOAD_FROM_THE_FUTURE"
        | "SIGNING_TIME_MISMATCH"
        | "PAYLOAD_REPLAYED" => (
            "ҰКО оператордың қолтаңбасын қабылдамады.",
            "Компьютер сағатын тексеріп, шешімді қайталаңыз.",
            "НУЦ не принял подпись оператора.",
            "Проверьте часы компьютера и повторите решение.",
        ),
        _ => (
            "ҰКО сұрауды орындамады.",
            "Себеп кодын жазып алып, қолдау қызметіне хабарласыңыз.",
            "НУЦ не выполнил запрос.",
            "Запишите код причины и обратитесь в поддержку.",
        ),
    }
}

/// The explanation of `code` for the page: `{"kk": {"what", "next"}, "ru": {…}}`.
pub fn explain(code: &str) -> Value {
    let (kw, kn, rw, rn) = words(code);
    json!({"kk": {"what": kw, "next": kn}, "ru": {"what": rw, "next": rn}})
}

/// The page's labels: `{"kk": {key: text}, "ru": {key: text}}`.
pub fn labels() -> Value {
    let mut kk = Map::new();
    let mut ru = Map::new();
    for (key, k, r) in UI {
        kk.insert((*key).into(), (*k).into());
        ru.insert((*key).into(), (*r).into());
    }
    json!({"kk": kk, "ru": ru})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_in_both_languages_once() {
        let mut seen = std::collections::HashSet::new();
        for (key, kk, ru) in UI {
            assert!(seen.insert(key), "{key} twice");
            assert!(!kk.trim().is_empty() && !ru.trim().is_empty(), "{key}");
        }
        let l = labels();
        assert_eq!(l["kk"]["search.iin"], "ЖСН (12 сан)");
        assert_eq!(l["ru"]["search.iin"], "ИИН (12 цифр)");
    }

    #[test]
    fn every_label_the_page_uses_exists() {
        // The page names its labels with data-i18n="key"; a missing one would show the key.
        let page = include_str!("assets/index.html");
        let keys: std::collections::HashSet<&str> = UI.iter().map(|(k, _, _)| *k).collect();
        for part in page.split("data-i18n=\"").skip(1) {
            let key = part.split('"').next().unwrap_or("");
            assert!(
                keys.contains(key),
                "label {key:?} used by the page is not in UI"
            );
        }
    }

    #[test]
    fn unknown_codes_still_say_what_to_do() {
        let e = explain("SOMETHING_NEW");
        assert!(e["kk"]["next"].as_str().is_some_and(|s| !s.is_empty()));
        assert_ne!(explain("APPLICANT_NOT_IN_REGISTRY"), e);
    }
}
