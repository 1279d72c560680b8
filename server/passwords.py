"""The one password policy, applied wherever a password is set (the users API, invite acceptance,
``pal user``): at least :data:`MIN_LENGTH` characters, not one of the most common passwords, and
neither the e-mail address nor (from 4 characters on) its local part inside it."""

from __future__ import annotations

MIN_LENGTH = 10
MIN_LOCAL_PART = 4  # shorter local parts ("al@...") would refuse half the dictionary

# Among the most used passwords of public breach lists (compared without regard to case); the
# short ones are refused by the length rule anyway and are kept for a later, shorter minimum.
_COMMON_TEXT = """
123456 123456789 12345678 1234567 12345 1234567890 123123 1234 111111 000000 654321 666666 121212
123321 112233 987654321 0987654321 1111111111 0000000000 1234512345 1q2w3e4r 1q2w3e4r5t 1qaz2wsx
1qaz2wsx3edc zaq12wsx qwerty qwerty123 qwerty1234 qwerty12345 qwertyuiop qwertyuiop123 asdfghjkl
asdfghjkl123 zxcvbnm zxcvbnm123 azerty password password1 password12 password123 password1234
password12345 passw0rd p@ssw0rd p@ssword p@ssword123 passwordpassword letmein letmein123 welcome
welcome1 welcome123 welcome2024 welcome2025 iloveyou iloveyou1 iloveyou123 princess sunshine
sunshine123 football football123 baseball basketball superman batman spiderman starwars pokemon
dragon monkey monkey123 master master123 shadow michael jennifer charlie donald freedom whatever
trustno1 abc123 abc12345 abcd1234 abcdefgh abcdefghij abcdefghijk admin admin123 admin1234
administrator changeme changeme123 default guest login login123 root toor secret secret123
computer internet samsung google linkedin facebook hello123 hellohello helloworld mypassword
mypassword123 letmeinnow iloveyou2 chocolate butterfly jordan23 liverpool arsenal chelsea
"""
COMMON = frozenset(_COMMON_TEXT.split())


def password_problem(password: str, email: str | None = None) -> str | None:
    """Why ``password`` may not be used (a rule, in words), or None when it may."""
    if len(password) < MIN_LENGTH:
        return f"must have at least {MIN_LENGTH} characters"
    lowered = password.lower()
    if lowered in COMMON:
        return "is one of the most common passwords"
    if email:
        address = email.strip().lower()
        local = address.split("@")[0]
        if lowered == address or (len(local) >= MIN_LOCAL_PART and local in lowered):
            return "may not contain your e-mail address or its name part"
    return None
